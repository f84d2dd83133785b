import Foundation
import SluiceCore
import SluiceProviders
import Testing

@Suite struct EnvelopeTests {
    @Test func encodeThenPeek() throws {
        let data = Array(#"{"x":[1,{"y":"}"}],"s":"a\"b"}"#.utf8)
        let env = EventEnvelope.encode(jobID: "job \"1\"", seq: 42, event: .chunk, data: data, ts: 1.5)
        let v = try JSON.decode(JSONValue.self, from: env)
        #expect(v["job_id"] == "job \"1\"")
        #expect(v["seq"] == 42)
        #expect(v["event"] == "chunk")
        #expect(v["ts"] == 1.5)
        let peek = try #require(EventEnvelope.peek(env))
        #expect(peek.seq == 42)
        #expect(peek.event == "chunk")
        #expect(Array(env[peek.data]) == data)
    }

    @Test func peekRejectsWhatIsNotAnEnvelope() {
        #expect(EventEnvelope.peek(Array("[]".utf8)) == nil)
        #expect(EventEnvelope.peek(Array(#"{"seq": 1"#.utf8)) == nil)
        #expect(EventEnvelope.peek(Array(#"{"seq": 1, "event": "x"}"#.utf8)) == nil)
    }
}

@Suite struct MetricsTests {
    @Test func streamingTimings() {
        var t = TimingRecorder(start: 100)
        t.byteReceived(at: 100.1)
        t.contentChunk(at: 100.5)   // first token after 0.5 s
        t.contentChunk(at: 100.7)
        t.contentChunk(at: 100.9)
        t.byteReceived(at: 101.0)   // usage chunk, [DONE]
        #expect(abs(t.latency - 1.0) < 1e-9)
        #expect(abs(t.timeToFirstToken! - 0.5) < 1e-9)
        #expect(abs(t.interTokenLatency! - 0.2) < 1e-9)
        // 10 tokens over the 0.5 s after the first token.
        #expect(abs(t.tokensPerSecond(outputTokens: 10)! - 20) < 1e-9)
    }

    @Test func nonStreamingReplyUsesTheWholeLatency() {
        var t = TimingRecorder(start: 0)
        t.contentChunk(at: 2)
        #expect(t.interTokenLatency == nil)
        #expect(t.tokensPerSecond(outputTokens: 10) == 5)
        #expect(t.tokensPerSecond(outputTokens: 0) == nil)
    }

    @Test func accumulatorJoinsTextToolCallsAndTakesTheLastUsage() {
        var acc = StreamAccumulator()
        func chunk(_ delta: ChunkDelta?, finish: String? = nil, usage: Usage? = nil, choices: Bool = true) -> ChatCompletionChunk {
            ChatCompletionChunk(id: "c1", created: 1, model: "m", choices: choices ? [ChunkChoice(index: 0, delta: delta, finishReason: finish)] : [], usage: usage)
        }
        acc.add(chunk(ChunkDelta(role: "assistant", content: "")))
        acc.add(chunk(ChunkDelta(content: "Hel")))
        acc.add(chunk(ChunkDelta(content: "lo")))
        acc.add(chunk(ChunkDelta(toolCalls: [ToolCallDelta(index: 0, id: "call_1", type: "function", function: .init(name: "get_weather", arguments: "{\"ci"))])))
        acc.add(chunk(ChunkDelta(toolCalls: [ToolCallDelta(index: 0, function: .init(arguments: "ty\":\"Paris\"}"))])))
        acc.add(chunk(ChunkDelta(), finish: "tool_calls", usage: Usage(promptTokens: 1, completionTokens: 1)))
        acc.add(chunk(nil, usage: Usage(promptTokens: 9, completionTokens: 5), choices: false))
        #expect(acc.output == "Hello")
        #expect(acc.usage == Usage(promptTokens: 9, completionTokens: 5))
        #expect(acc.contentChunks == 4)
        let choice = try! #require(acc.completionChoices.first)
        #expect(choice.finishReason == "tool_calls")
        #expect(choice.message.toolCalls == [ToolCall(id: "call_1", function: .init(name: "get_weather", arguments: "{\"city\":\"Paris\"}"))])
        #expect(acc.allChoicesFinished)
    }

    /// The chunks a response stands in with, read back as a stream, are the response.
    @Test func standInChunksSayWhatTheResponseSays() throws {
        let choices = [
            CompletionChoice(index: 0, message: AssistantMessage(content: "Hello"), finishReason: "stop"),
            CompletionChoice(index: 1, message: AssistantMessage(content: nil, toolCalls: [
                ToolCall(id: "call_1", function: .init(name: "get_weather", arguments: "{\"city\":\"Paris\"}")),
            ]), finishReason: "tool_calls"),
        ]
        let r = UnifiedResponse(
            id: "x", created: 1, model: "m", choices: choices, usage: Usage(promptTokens: 3, completionTokens: 4),
            systemFingerprint: "fp", sessionID: nil, chatInput: "q", chatOutput: "Hello", context: [], provider: "openai",
            timestamp: 2.5, parameters: [:],
            metrics: Metrics(inputTokens: 3, outputTokens: 4, totalTokens: 7, costUSD: nil, latencyS: 1,
                             timeToFirstTokenS: 0.5, interTokenLatencyS: nil, tokensPerSecond: 4, queueWaitS: 0.1,
                             attempts: 1, usageSource: .provider, streamComplete: true),
            jobID: "j", status: .succeeded, error: nil, metadata: .null)
        let chunks = r.standInChunks
        #expect(chunks.count == 3)
        #expect(chunks.last?.choices.isEmpty == true && chunks.last?.usage == r.usage)
        #expect(chunks.allSatisfy { $0.id == "x" && $0.model == "m" && $0.systemFingerprint == "fp" })
        var acc = StreamAccumulator()
        for chunk in chunks { acc.add(try JSON.decode(ChatCompletionChunk.self, from: try JSON.encode(chunk))) }
        #expect(acc.completionChoices == choices)
        #expect(acc.usage == r.usage)
        #expect(acc.allChoicesFinished)
    }

    @Test func priceTable() {
        let table = PriceTable(overrides: ["mock/m": .init(input: 1, output: 2)])
        #expect(table.cost(provider: "mock", model: "m", inputTokens: 1_000_000, outputTokens: 500_000) == 2)
        #expect(table.cost(provider: "openai", model: "gpt-4o-mini", inputTokens: 1_000_000, outputTokens: 0) == 0.15)
        #expect(table.cost(provider: "openai", model: "unknown-model", inputTokens: 1, outputTokens: 1) == nil)
    }

    @Test func estimatorIsMarkedAndPlausible() {
        #expect(TokenEstimator.tokens(in: "") == 0)
        #expect(TokenEstimator.tokens(in: "abcd") == 1)
        #expect(TokenEstimator.tokens(in: "abcde") == 2)
    }
}

@Suite struct ResponseEncodingTests {
    @Test func unifiedResponseHasLLMstudioFieldsWithExplicitNulls() throws {
        let r = UnifiedResponse(
            id: "x", created: 1, model: "m",
            choices: [CompletionChoice(index: 0, message: AssistantMessage(content: "hi"), finishReason: "stop")],
            usage: Usage(promptTokens: 1, completionTokens: 2), systemFingerprint: nil, sessionID: nil,
            chatInput: "q", chatOutput: "hi", context: [["role": "user", "content": "q"]], provider: "openai",
            timestamp: 2.5, parameters: ["temperature": 1],
            metrics: Metrics(inputTokens: 1, outputTokens: 2, totalTokens: 3, costUSD: nil, latencyS: 1,
                             timeToFirstTokenS: 0.5, interTokenLatencyS: nil, tokensPerSecond: 4, queueWaitS: 0.1,
                             attempts: 1, usageSource: .provider, streamComplete: true),
            jobID: "j", status: .succeeded, error: nil, metadata: .null)
        let v = try JSON.decode(JSONValue.self, from: try JSON.encode(r))
        for key in ["id", "object", "created", "model", "choices", "usage", "system_fingerprint", "session_id", "chat_input",
                    "chat_output", "context", "provider", "timestamp", "parameters", "metrics", "job_id", "status", "error", "metadata"] {
            #expect(v[key] != nil, "missing \(key)")
        }
        #expect(v["object"] == "chat.completion")
        #expect(v["system_fingerprint"] == .null)
        #expect(v["error"] == .null)
        #expect(v["choices"]?.arrayValue?.first?["message"]?["function_call"] == .null)
        #expect(v["choices"]?.arrayValue?.first?["message"]?["tool_calls"] == .null)
        #expect(v["usage"]?["total_tokens"] == 3)
        #expect(v["metrics"]?["cost_usd"] == .null)
        #expect(v["metrics"]?["usage_source"] == "provider")
        #expect(v["metrics"]?["stream_complete"] == true)
        let back = try JSON.decode(UnifiedResponse.self, from: try JSON.encode(r))
        #expect(back.chatOutput == "hi")
        #expect(back.status == .succeeded)
    }
}

extension ResponseEncodingTests {
    /// The response's one serialiser writes every field of the contract, full and sparse,
    /// and what it writes reads back to the same bytes.
    @Test func theOneSerialiserWritesEveryFieldAndRoundTrips() throws {
        let full = UnifiedResponse(
            id: "chatcmpl-1", created: 1_700_000_000, model: "gpt-4o",
            choices: [
                CompletionChoice(index: 0, message: AssistantMessage(content: "say \"hi\"\n\u{1}é🦀", refusal: "no"), finishReason: "stop",
                                 logprobs: ["content": []]),
                CompletionChoice(index: 1, message: AssistantMessage(content: nil, toolCalls: [
                    ToolCall(id: "call_1", function: .init(name: "f", arguments: #"{"a":1}"#)),
                    ToolCall(id: "call_2", type: "function", function: .init(name: "g", arguments: "{}")),
                ]), finishReason: "tool_calls"),
            ],
            usage: Usage(promptTokens: 10, completionTokens: 20, totalTokens: 30,
                         promptTokensDetails: ["cached_tokens": 2], completionTokensDetails: ["reasoning_tokens": 0]),
            systemFingerprint: "fp_1", sessionID: "s", chatInput: "q", chatOutput: "a",
            context: [["role": "user", "content": "q"]], provider: "openai", timestamp: 1_795_000_000.123456,
            parameters: ["temperature": 0.7, "max_tokens": 100, "stop": ["x"]],
            metrics: Metrics(inputTokens: 10, outputTokens: 20, totalTokens: 30, costUSD: 0.000123, latencyS: 1.25,
                             timeToFirstTokenS: 0.3, interTokenLatencyS: 0.05, tokensPerSecond: 21.05, queueWaitS: 0.001,
                             attempts: 2, usageSource: .estimated, streamComplete: false),
            jobID: "j-1", status: .failed, error: .init(type: "timeout", message: "too slow", providerStatus: 504, retryable: true),
            metadata: ["user": "u", "n": 1], raw: ["id": "x"])
        var sparse = full
        sparse.choices = []
        sparse.usage = nil
        sparse.systemFingerprint = nil
        sparse.sessionID = nil
        sparse.chatInput = nil
        sparse.chatOutput = nil
        sparse.error = nil
        sparse.raw = nil
        sparse.metadata = .null
        sparse.metrics.costUSD = nil
        sparse.metrics.timeToFirstTokenS = nil
        let always: Set<String> = [
            "id", "choices", "created", "model", "object", "system_fingerprint", "usage", "session_id",
            "chat_input", "chat_output", "context", "provider", "timestamp", "parameters", "metrics",
            "job_id", "status", "error", "metadata",
        ]
        for response in [full, sparse] {
            let direct = try response.json()
            #expect(try JSON.encode(response) == direct)
            // Every field the contract lists is written, null or not, and reads back the same.
            guard case .object(let fields) = try JSONValue.parse(direct) else {
                Issue.record("not an object"); continue
            }
            #expect(always.isSubset(of: Set(fields.keys)))
            let back = try JSON.decode(UnifiedResponse.self, from: direct)
            #expect(try JSONValue.parse(back.json()) == JSONValue.parse(direct))
        }
        #expect(try JSONValue.parse(full.json())["raw"] == ["id": "x"])
        #expect(try JSONValue.parse(sparse.json())["raw"] == nil)
    }
}

@Suite struct ConfigTests {
    @Test func defaultsNeedNoFile() throws {
        let c = try SluiceConfig.parse(yaml: "")
        #expect(c.kafka.requestsTopic == "sluice.requests")
        #expect(c.kafka.groupID == "sluice-workers")
        #expect(c.redis.eventTTLSeconds == 3600)
        #expect(c.worker.maxInFlight == 1024)
        #expect(c.gateway.listen == "127.0.0.1:8080")
    }

    @Test func fileAndEnvironment() throws {
        let yaml = """
            kafka:
              brokers: k1:9092
              group_id: g
            redis: { url: "redis://r:6379", event_ttl_s: 60 }
            worker: { max_in_flight: 7 }
            providers:
              - { name: local, kind: openai-compatible, base_url: "http://127.0.0.1:8000/v1" }
            models:
              default: { provider: local, model: llama }
            pricing:
              local/llama: { input: 1, output: 2 }
            """
        let c = try SluiceConfig.parse(yaml: yaml, environment: ["SLUICE_KAFKA_BROKERS": "env:1", "SLUICE_GROUP_ID": "eg"])
        #expect(c.kafka.brokers == "env:1")
        #expect(c.kafka.groupID == "eg")
        #expect(c.kafka.requestsTopic == "sluice.requests")
        #expect(c.redis.eventTTLSeconds == 60)
        #expect(c.worker.maxInFlight == 7)
        #expect(c.providers.map(\.name) == ["local"])
        #expect(c.pricing["local/llama"] == .init(input: 1, output: 2))
        let (p, m) = try c.resolve(provider: nil, model: "default")
        #expect(p.name == "local" && m == "llama")
    }

    @Test func badConfigSaysWhichKey() {
        #expect(throws: SluiceError.self) { try SluiceConfig.parse(yaml: "worker: { max_in_flight: lots }") }
        do {
            _ = try SluiceConfig.parse(yaml: "models:\n  x: { provider: nope, model: m }")
        } catch let e as SluiceError {
            #expect(e.message.contains("nope"))
        } catch { Issue.record("\(error)") }
    }

    @Test func finishedReplaysAndBatchChunkEvents() throws {
        let defaults = try SluiceConfig.parse(yaml: "")
        #expect(defaults.worker.compactFinishedReplay)
        #expect(defaults.worker.batchChunkEvents == .followed)
        let c = try SluiceConfig.parse(yaml: "worker: { compact_finished_replay: false, batch_chunk_events: never }")
        #expect(!c.worker.compactFinishedReplay)
        #expect(c.worker.batchChunkEvents == .never)
        #expect(try SluiceConfig.parse(yaml: "worker: { batch_chunk_events: always }").worker.batchChunkEvents == .always)
        do {
            _ = try SluiceConfig.parse(yaml: "worker: { batch_chunk_events: sometimes }")
            Issue.record("an unknown mode was accepted")
        } catch let e as SluiceError {
            #expect(e.message == "config key worker.batch_chunk_events: \"sometimes\" is not a mode: give one of followed, always, never")
        }
    }

    @Test func routing() throws {
        let c = try SluiceConfig.parse(yaml: "")
        #expect(try c.resolve(provider: "openai", model: "gpt-4o").1 == "gpt-4o")
        #expect(try c.resolve(provider: nil, model: "anthropic/claude-3-5-haiku-latest").0.name == "anthropic")
        #expect(try c.resolve(provider: nil, model: "default") .1 == "gpt-4o-mini")
        #expect(throws: SluiceError.self) { try c.resolve(provider: "nope", model: "x") }
        #expect(throws: SluiceError.self) { try c.resolve(provider: nil, model: "mystery") }
    }
}

@Suite struct OpenAIStreamTests {
    /// A recorded OpenAI stream with `stream_options.include_usage`: role chunk, content,
    /// finish chunk, usage-only chunk with `choices: []`, `[DONE]`.
    static let recorded = """
        data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718622757,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

        data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718622757,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

        data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718622757,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}],"usage":null}

        data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718622757,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

        data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718622757,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":0}}}

        data: [DONE]


        """

    @Test func decodesTheRecordedStream() throws {
        let call = ProviderCall(provider: .init(name: "openai", kind: .openai, baseURL: "http://x/v1"), model: "gpt-4o-mini",
                                messages: [], parameters: [:], stream: true, apiKey: nil)
        var decoder = OpenAIWireFormat().makeStreamDecoder(call)
        var parser = SSEParser()
        var acc = StreamAccumulator()
        var relayed = 0
        for event in parser.feed(Array(Self.recorded.utf8)) {
            for c in try decoder.decode(event) {
                acc.add(c.chunk)
                relayed += 1
                // What is relayed is the provider's own chunk JSON.
                #expect(try JSON.decode(ChatCompletionChunk.self, from: c.json) == c.chunk)
            }
        }
        #expect(decoder.isComplete)
        #expect(relayed == 5)
        #expect(acc.output == "Hello there")
        #expect(acc.usage?.totalTokens == 14)
        #expect(acc.usage?.promptTokensDetails == ["cached_tokens": 0])
        #expect(acc.completionChoices.first?.finishReason == "stop")
    }

    @Test func azureFilterChunksAreSkippedAndGarbageIsAnError() throws {
        let call = ProviderCall(provider: .init(name: "azure", kind: .azure, baseURL: "http://x"), model: "d",
                                messages: [], parameters: [:], stream: true, apiKey: nil)
        var decoder = OpenAIWireFormat(azure: true).makeStreamDecoder(call)
        #expect(try decoder.decode(SSEEvent(data: #"{"choices":[],"prompt_filter_results":[{"prompt_index":0}]}"#)).isEmpty)
        #expect(throws: ProviderError.self) { try decoder.decode(SSEEvent(data: "{not json")) }
    }

    @Test func requestCarriesModelStreamOptionsAndKeyOnlyInHeaders() throws {
        let call = ProviderCall(provider: .init(name: "openai", kind: .openai, baseURL: "http://x/v1/"), model: "gpt-4o-mini",
                                messages: [["role": "user", "content": "hi"]], parameters: ["temperature": 0.5], stream: true,
                                apiKey: Secret("sk-test-123"))
        let request = try OpenAIWireFormat().makeRequest(call)
        #expect(request.url == "http://x/v1/chat/completions")
        #expect(request.headers["authorization"] == "Bearer sk-test-123")
        let body = try JSON.decode(JSONValue.self, from: request.body)
        #expect(body["model"] == "gpt-4o-mini")
        #expect(body["stream"] == true)
        #expect(body["stream_options"]?["include_usage"] == true)
        #expect(body["temperature"] == 0.5)
        #expect(!String(decoding: request.body, as: UTF8.self).contains("sk-test-123"))
        #expect(!"\(request)".contains("sk-test-123"))
    }
}
