import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceProviders
import Testing

// Recorded provider streams, replayed through the SSE parser and each wire format's
// decoder, checked for the chunks they normalise to and what those add up to. The
// fixtures follow the providers' documented SSE shapes, quirks included.

extension JSONValue {
    /// Element `index` of an array.
    fileprivate subscript(index: Int) -> JSONValue? {
        guard let a = arrayValue, a.indices.contains(index) else { return nil }
        return a[index]
    }
}

/// What replaying a recorded stream gave.
struct Replay {
    var chunks: [ProviderChunk] = []
    var accumulator = StreamAccumulator()
    var complete = false
    var error: (any Error)?

    var choice: CompletionChoice? { accumulator.completionChoices.first }
    var toolCalls: [ToolCall] { choice?.message.toolCalls ?? [] }
    /// The chunks as published, parsed back.
    var published: [JSONValue] { chunks.map { (try? JSON.decode(JSONValue.self, from: $0.json)) ?? .null } }
}

/// Feeds `fixture` to a fresh decoder in `piece`-byte reads (so events split across reads
/// too), stopping at the first error, as the provider runner does.
func replay(_ fixture: String, _ format: any WireFormat, _ call: ProviderCall, piece: Int = 7) -> Replay {
    var result = Replay()
    var parser = SSEParser()
    var decoder = format.makeStreamDecoder(call)
    let bytes = Array(fixture.utf8)
    var events: [SSEEvent] = []
    var offset = 0
    while offset < bytes.count {
        events += parser.feed(bytes[offset..<min(offset + piece, bytes.count)])
        offset += piece
    }
    if let last = parser.finish() { events.append(last) }
    for event in events {
        do {
            for c in try decoder.decode(event) {
                result.chunks.append(c)
                result.accumulator.add(c.chunk)
            }
        } catch {
            result.error = error
            break
        }
    }
    result.complete = decoder.isComplete
    return result
}

func call(_ kind: SluiceConfig.Provider.Kind, base: String = "http://provider.test", model: String = "m",
          messages: [JSONValue] = [["role": "user", "content": "hi"]], parameters: [String: JSONValue] = [:],
          stream: Bool = true, key: String? = "sk-secret-key") -> ProviderCall {
    ProviderCall(provider: .init(name: kind.rawValue, kind: kind, baseURL: base), model: model, messages: messages,
                 parameters: parameters, stream: stream, apiKey: key.map(Secret.init))
}

/// Every published chunk is an OpenAI `chat.completion.chunk` whose JSON is the chunk.
func expectOpenAIChunks(_ r: Replay, sourceLocation: SourceLocation = #_sourceLocation) throws {
    for (c, json) in zip(r.chunks, r.published) {
        #expect(json["object"] == "chat.completion.chunk", sourceLocation: sourceLocation)
        #expect(json["choices"]?.arrayValue != nil, sourceLocation: sourceLocation)
        #expect(json["id"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
        #expect(try JSON.decode(ChatCompletionChunk.self, from: c.json) == c.chunk, sourceLocation: sourceLocation)
    }
}

// MARK: - Anthropic

@Suite struct AnthropicStreamTests {
    /// Text, a `ping` after the block start, cache reads, cumulative output usage.
    static let text = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-20250514","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":100,"cache_read_input_tokens":2048,"output_tokens":1,"service_tier":"standard"}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: ping
        data: {"type": "ping"}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", wörld! 👋"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    @Test func textStreamNormalisesToOpenAIChunks() throws {
        let r = replay(Self.text, AnthropicWireFormat(), call(.anthropic))
        #expect(r.error == nil)
        #expect(r.complete)
        try expectOpenAIChunks(r)
        // role, two deltas, finish, usage
        #expect(r.chunks.count == 5)
        let json = r.published
        #expect(json[0]["choices"]?[0]?["delta"]?["role"] == "assistant")
        #expect(json[1]["choices"]?[0]?["delta"]?["content"] == "Hello")
        #expect(json[3]["choices"]?[0]?["finish_reason"] == "stop")
        #expect(json[4]["choices"] == [])
        #expect(json.allSatisfy { $0["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL" && $0["model"] == "claude-sonnet-4-20250514" })
        #expect(r.accumulator.output == "Hello, wörld! 👋")
        #expect(r.choice?.finishReason == "stop")
        // Output tokens are cumulative: 15, not 1 + 15. The prompt counts cache tokens.
        let usage = try #require(r.accumulator.usage)
        #expect(usage.completionTokens == 15)
        #expect(usage.promptTokens == 25 + 100 + 2048)
        #expect(usage.totalTokens == 25 + 100 + 2048 + 15)
        #expect(usage.promptTokensDetails == ["cached_tokens": 2048, "cache_creation_tokens": 100])
        #expect(r.accumulator.contentChunks == 2)
    }

    /// Text then two tools: arguments split mid-token, an empty first delta, a tool with
    /// no input at all; thinking blocks are dropped.
    static let tools = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants weather."}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: content_block_start
        data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

        event: ping
        data: {"type": "ping"}

        event: content_block_delta
        data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check."}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":1}

        event: content_block_start
        data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"locat"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ion\\": \\"San Fra"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ncisco, CA\\", \\"unit\\": \\"fahr"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"enheit\\"}"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":2}

        event: content_block_start
        data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":3}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    @Test func toolUseBecomesToolCallDeltasWithTheRightIndex() throws {
        let r = replay(Self.tools, AnthropicWireFormat(), call(.anthropic), piece: 5)
        #expect(r.error == nil)
        #expect(r.complete)
        try expectOpenAIChunks(r)
        #expect(r.accumulator.output == "Let me check.")
        #expect(r.choice?.finishReason == "tool_calls")
        let calls = r.toolCalls
        #expect(calls.count == 2)
        #expect(calls.first?.id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6")
        #expect(calls.first?.function.name == "get_weather")
        #expect(calls.first?.function.arguments == #"{"location": "San Francisco, CA", "unit": "fahrenheit"}"#)
        #expect(calls.last?.id == "toolu_02")
        #expect(calls.last?.function.name == "get_time")
        #expect(calls.last?.function.arguments == "{}")
        // Tool indexes count tools, not content blocks (block 2 is tool 0).
        let toolIndexes = r.published.compactMap { $0["choices"]?[0]?["delta"]?["tool_calls"]?[0]?["index"]?.intValue }
        #expect(Set(toolIndexes) == [0, 1])
        #expect(r.accumulator.usage?.completionTokens == 89)
        #expect(r.accumulator.usage?.promptTokens == 472)
        #expect(r.accumulator.usage?.promptTokensDetails == nil)
    }

    /// An `error` event after HTTP 200, mid-stream.
    static let lateError = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once upon"}}

        event: error
        data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


        """

    @Test func lateErrorEventIsAProviderError() throws {
        let r = replay(Self.lateError, AnthropicWireFormat(), call(.anthropic))
        let error = try #require(r.error as? ProviderError)
        #expect(error.kind == .http)
        #expect(error.retryable)
        #expect(error.message.contains("overloaded_error"))
        #expect(error.message.contains("Overloaded"))
        #expect(!r.complete)
        #expect(r.accumulator.output == "Once upon")

        let invalid = replay(
            #"event: error\#ndata: {"type":"error","error":{"type":"invalid_request_error","message":"bad"}}\#n\#n"#,
            AnthropicWireFormat(), call(.anthropic))
        #expect((invalid.error as? ProviderError)?.retryable == false)
    }

    @Test func aStreamCutBeforeMessageStopIsNotComplete() {
        let cut = Self.text.components(separatedBy: "event: message_stop")[0]
        let r = replay(cut, AnthropicWireFormat(), call(.anthropic))
        #expect(r.error == nil)
        #expect(!r.complete)
        // The finish is only published with the proper end.
        #expect(r.choice?.finishReason == nil)
    }

    @Test func unknownEventsAreIgnoredAndGarbageIsAnError() throws {
        var decoder = AnthropicWireFormat().makeStreamDecoder(call(.anthropic))
        #expect(try decoder.decode(SSEEvent(event: "future_event", data: #"{"type":"future_event","x":1}"#)).isEmpty)
        #expect(throws: ProviderError.self) { try decoder.decode(SSEEvent(event: "content_block_delta", data: "{nope")) }
    }

    @Test func requestTranslatesMessagesToolsAndParameters() throws {
        let messages: [JSONValue] = [
            ["role": "system", "content": "You are terse."],
            ["role": "developer", "content": [["type": "text", "text": "Use metric units."]]],
            ["role": "user", "content": "Weather in Paris and Rome?"],
            ["role": "assistant", "content": nil, "tool_calls": [
                ["id": "call_a", "type": "function", "function": ["name": "get_weather", "arguments": #"{"city":"Paris"}"#]],
                ["id": "call_b", "type": "function", "function": ["name": "get_weather", "arguments": #"{"city":"Rome"}"#]],
            ]],
            ["role": "tool", "tool_call_id": "call_a", "content": "18C"],
            ["role": "tool", "tool_call_id": "call_b", "content": "24C"],
            ["role": "user", "content": [["type": "text", "text": "Thanks"],
                                         ["type": "image_url", "image_url": ["url": "data:image/png;base64,iVBORw0KGgo="]]]],
        ]
        let tools: JSONValue = [["type": "function", "function": [
            "name": "get_weather", "description": "Weather now",
            "parameters": ["type": "object", "properties": ["city": ["type": "string"]], "required": ["city"]],
        ]]]
        let c = call(.anthropic, base: "https://api.anthropic.com/", model: "claude-3-5-haiku-latest", messages: messages,
                     parameters: ["tools": tools, "tool_choice": "required", "stop": "END", "max_completion_tokens": 300,
                                  "temperature": 0.3, "top_k": 5, "frequency_penalty": 1, "user": "u-1"])
        let request = try AnthropicWireFormat().makeRequest(c)
        #expect(request.url == "https://api.anthropic.com/v1/messages")
        #expect(request.headers["x-api-key"] == "sk-secret-key")
        #expect(request.headers["anthropic-version"] == "2023-06-01")
        #expect(request.headers["authorization"] == nil)
        let body = try JSON.decode(JSONValue.self, from: request.body)
        #expect(body["model"] == "claude-3-5-haiku-latest")
        #expect(body["system"] == "You are terse.\n\nUse metric units.")
        #expect(body["max_tokens"] == 300)
        #expect(body["stop_sequences"] == ["END"])
        #expect(body["temperature"] == 0.3)
        #expect(body["top_k"] == 5)
        #expect(body["frequency_penalty"] == nil)
        #expect(body["metadata"] == ["user_id": "u-1"])
        #expect(body["stream"] == true)
        #expect(body["tools"] == [["name": "get_weather", "description": "Weather now",
                                   "input_schema": ["type": "object", "properties": ["city": ["type": "string"]], "required": ["city"]]]])
        #expect(body["tool_choice"] == ["type": "any"])
        let turns = try #require(body["messages"]?.arrayValue)
        #expect(turns.map { $0["role"]?.stringValue } == ["user", "assistant", "user"])
        #expect(turns[0]["content"] == "Weather in Paris and Rome?")
        #expect(turns[1]["content"] == [
            ["type": "tool_use", "id": "call_a", "name": "get_weather", "input": ["city": "Paris"]],
            ["type": "tool_use", "id": "call_b", "name": "get_weather", "input": ["city": "Rome"]],
        ])
        // Both results and the next user text in one user turn, results first.
        #expect(turns[2]["content"] == [
            ["type": "tool_result", "tool_use_id": "call_a", "content": "18C"],
            ["type": "tool_result", "tool_use_id": "call_b", "content": "24C"],
            ["type": "text", "text": "Thanks"],
            ["type": "image", "source": ["type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="]],
        ])
        #expect(!String(decoding: request.body, as: UTF8.self).contains("sk-secret-key"))
    }

    @Test func requestDefaultsAndToolChoiceMapping() throws {
        let base = call(.anthropic, base: "http://proxy.test/v1", stream: false)
        let request = try AnthropicWireFormat().makeRequest(base)
        #expect(request.url == "http://proxy.test/v1/messages")
        let body = try JSON.decode(JSONValue.self, from: request.body)
        #expect(body["max_tokens"] == 4096)
        #expect(body["stream"] == false)
        #expect(body["tools"] == nil)

        func choice(_ value: JSONValue, parallel: Bool? = nil) throws -> JSONValue? {
            var p: [String: JSONValue] = ["tools": [["type": "function", "function": ["name": "f"]]], "tool_choice": value]
            if let parallel { p["parallel_tool_calls"] = .bool(parallel) }
            let body = try JSON.decode(JSONValue.self, from: AnthropicWireFormat().makeRequest(call(.anthropic, parameters: p)).body)
            #expect(body["tools"]?[0]?["input_schema"] == ["type": "object", "properties": [:]])
            return body["tool_choice"]
        }
        #expect(try choice("auto") == ["type": "auto"])
        #expect(try choice("none") == ["type": "none"])
        #expect(try choice(["type": "function", "function": ["name": "f"]]) == ["type": "tool", "name": "f"])
        #expect(try choice("auto", parallel: false) == ["type": "auto", "disable_parallel_tool_use": true])

        let bad = call(.anthropic, messages: [["role": "assistant", "tool_calls": [["id": "x", "function": ["name": "f", "arguments": "{oops"]]]]])
        #expect(throws: SluiceError.self) { try AnthropicWireFormat().makeRequest(bad) }
    }

    @Test func nonStreamingMessageAndErrorBodies() throws {
        let body = #"""
            {"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022",
             "content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_9","name":"get_weather","input":{"unit":"c","city":"Oslo"}}],
             "stop_reason":"tool_use","stop_sequence":null,
             "usage":{"input_tokens":50,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":20}}
            """#
        let completion = try AnthropicWireFormat().decodeCompletion(Array(body.utf8), call: call(.anthropic, stream: false))
        #expect(completion.id == "msg_01")
        #expect(completion.model == "claude-3-5-haiku-20241022")
        let choice = try #require(completion.choices.first)
        #expect(choice.message.content == "Checking.")
        #expect(choice.finishReason == "tool_calls")
        #expect(choice.message.toolCalls == [ToolCall(id: "toolu_9", function: .init(name: "get_weather", arguments: #"{"city":"Oslo","unit":"c"}"#))])
        #expect(completion.usage?.promptTokens == 60)
        #expect(completion.usage?.completionTokens == 20)

        let maxed = #"{"id":"m","type":"message","content":[{"type":"text","text":"Cut"}],"stop_reason":"max_tokens","usage":{"input_tokens":1,"output_tokens":1}}"#
        #expect(try AnthropicWireFormat().decodeCompletion(Array(maxed.utf8), call: call(.anthropic)).choices.first?.finishReason == "length")

        let error = #"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}"#
        #expect(AnthropicWireFormat().errorMessage(Array(error.utf8)) == "rate_limit_error: Number of requests has exceeded your rate limit")
        #expect(throws: ProviderError.self) { try AnthropicWireFormat().decodeCompletion(Array(error.utf8), call: call(.anthropic)) }
    }
}

// MARK: - Gemini

@Suite struct GeminiStreamTests {
    /// Text in three responses, `usageMetadata` repeated on each as a running total;
    /// Google ends SSE events with CRLF pairs.
    static let text = """
        data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 9}]},"modelVersion": "gemini-2.0-flash","responseId": "mNt2aK2qJ7-4nvgPq4u1sAY"}

        data: {"candidates": [{"content": {"parts": [{"text": " quick brown fox"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 4,"totalTokenCount": 13},"modelVersion": "gemini-2.0-flash","responseId": "mNt2aK2qJ7-4nvgPq4u1sAY"}

        data: {"candidates": [{"content": {"parts": [{"text": " jumps."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 6,"totalTokenCount": 15,"cachedContentTokenCount": 4},"modelVersion": "gemini-2.0-flash","responseId": "mNt2aK2qJ7-4nvgPq4u1sAY"}


        """.replacingOccurrences(of: "\n", with: "\r\n")

    @Test func textStreamWithRepeatedUsage() throws {
        let r = replay(Self.text, GeminiWireFormat(), call(.gemini, model: "gemini-2.0-flash"))
        #expect(r.error == nil)
        #expect(r.complete)
        try expectOpenAIChunks(r)
        #expect(r.chunks.count == 4)  // three text chunks, one usage chunk
        let json = r.published
        #expect(json[0]["choices"]?[0]?["delta"] == ["role": "assistant", "content": "The"])
        #expect(json[2]["choices"]?[0]?["finish_reason"] == "stop")
        #expect(json[3]["choices"] == [])
        #expect(json.allSatisfy { $0["id"] == "mNt2aK2qJ7-4nvgPq4u1sAY" && $0["model"] == "gemini-2.0-flash" })
        #expect(r.accumulator.output == "The quick brown fox jumps.")
        // The last report wins; nothing is summed.
        let usage = try #require(r.accumulator.usage)
        #expect(usage.promptTokens == 9)
        #expect(usage.completionTokens == 6)
        #expect(usage.totalTokens == 15)
        #expect(usage.promptTokensDetails == ["cached_tokens": 4])
    }

    /// Thinking, then two function calls in one response.
    static let functionCalls = """
        data: {"candidates": [{"content": {"parts": [{"text": "**Planning** the lookups","thought": true}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 40,"totalTokenCount": 40},"modelVersion": "gemini-2.5-flash"}

        data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"unit": "celsius","location": "Paris"}}},{"functionCall": {"name": "get_weather","args": {"location": "Rome"}}}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 40,"candidatesTokenCount": 12,"totalTokenCount": 80,"thoughtsTokenCount": 28},"modelVersion": "gemini-2.5-flash"}


        """

    @Test func functionCallsArriveWholeWithGeneratedIDs() throws {
        let r = replay(Self.functionCalls, GeminiWireFormat(), call(.gemini))
        #expect(r.error == nil)
        #expect(r.complete)
        try expectOpenAIChunks(r)
        #expect(r.accumulator.output == "")  // thoughts are not output
        #expect(r.choice?.finishReason == "tool_calls")
        #expect(r.toolCalls == [
            ToolCall(id: "call_0", function: .init(name: "get_weather", arguments: #"{"location":"Paris","unit":"celsius"}"#)),
            ToolCall(id: "call_1", function: .init(name: "get_weather", arguments: #"{"location":"Rome"}"#)),
        ])
        let usage = try #require(r.accumulator.usage)
        #expect(usage.promptTokens == 40)
        #expect(usage.completionTokens == 12 + 28)
        #expect(usage.completionTokensDetails == ["reasoning_tokens": 28])
    }

    static let blockedPrompt = """
        data: {"promptFeedback": {"blockReason": "SAFETY","safetyRatings": [{"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT","probability": "NEGLIGIBLE"},{"category": "HARM_CATEGORY_HATE_SPEECH","probability": "HIGH"}]},"usageMetadata": {"promptTokenCount": 8,"totalTokenCount": 8},"modelVersion": "gemini-1.5-flash-002"}


        """

    @Test func blockedPromptIsAFailureThatIsNotRetried() throws {
        let r = replay(Self.blockedPrompt, GeminiWireFormat(), call(.gemini))
        let error = try #require(r.error as? ProviderError)
        #expect(!error.retryable)
        #expect(error.message.contains("blocked the prompt"))
        #expect(error.message.contains("SAFETY"))
        #expect(r.chunks.isEmpty)
        #expect(!r.complete)

        let body = Self.blockedPrompt.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("data: ".count)
        #expect(throws: ProviderError.self) { try GeminiWireFormat().decodeCompletion(Array(body.utf8), call: call(.gemini, stream: false)) }
    }

    @Test func safetyFinishIsContentFilterAndMaxTokensIsLength() throws {
        let safety = """
            data: {"candidates": [{"content": {"parts": [{"text": "I can"}],"role": "model"},"index": 0}]}

            data: {"candidates": [{"finishReason": "SAFETY","index": 0,"safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT","probability": "HIGH","blocked": true}]}],"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 2,"totalTokenCount": 7}}


            """
        let r = replay(safety, GeminiWireFormat(), call(.gemini))
        #expect(r.complete)
        #expect(r.choice?.finishReason == "content_filter")
        #expect(r.accumulator.output == "I can")
        #expect(r.accumulator.usage?.totalTokens == 7)

        let maxed = #"data: {"candidates": [{"content": {"parts": [{"text": "Lo"}],"role": "model"},"finishReason": "MAX_TOKENS","index": 0}]}"# + "\n\n"
        #expect(replay(maxed, GeminiWireFormat(), call(.gemini)).choice?.finishReason == "length")
    }

    @Test func aStreamWithoutFinishReasonIsNotComplete() {
        let cut = Self.text.components(separatedBy: "\r\n\r\n").prefix(2).joined(separator: "\r\n\r\n") + "\r\n\r\n"
        let r = replay(cut, GeminiWireFormat(), call(.gemini))
        #expect(r.error == nil)
        #expect(!r.complete)
        #expect(r.accumulator.output == "The quick brown fox")
        #expect(r.accumulator.usage == nil)  // published once finished
    }

    @Test func errorInsideTheStream() throws {
        let r = replay(#"data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}"# + "\n\n",
                       GeminiWireFormat(), call(.gemini))
        let error = try #require(r.error as? ProviderError)
        #expect(error.retryable)
        #expect(error.status == 503)
        #expect(error.message.contains("overloaded"))
    }

    @Test func requestTranslatesRolesToolsAndGenerationConfig() throws {
        let messages: [JSONValue] = [
            ["role": "system", "content": "Be brief."],
            ["role": "user", "content": "Weather in Paris?"],
            ["role": "assistant", "content": "Checking.", "tool_calls": [
                ["id": "call_0", "type": "function", "function": ["name": "get_weather", "arguments": #"{"city":"Paris"}"#]],
            ]],
            ["role": "tool", "tool_call_id": "call_0", "content": #"{"temp_c":18}"#],
            ["role": "user", "content": "And tomorrow?"],
        ]
        let tools: JSONValue = [
            ["type": "function", "function": [
                "name": "get_weather", "description": "Weather",
                "parameters": ["type": "object", "$schema": "http://json-schema.org/draft-07/schema#", "additionalProperties": false,
                               "properties": ["city": ["type": "string"], "additionalProperties": ["type": "string"]]],
            ]],
            ["type": "function", "function": ["name": "now", "parameters": ["type": "object", "properties": [:]]]],
        ]
        let c = call(.gemini, base: "https://generativelanguage.googleapis.com", model: "models/gemini-2.0-flash", messages: messages,
                     parameters: ["tools": tools, "tool_choice": ["type": "function", "function": ["name": "get_weather"]],
                                  "temperature": 0.2, "top_p": 0.9, "top_k": 40, "max_tokens": 100, "stop": ["\n\n"], "n": 2,
                                  "response_format": ["type": "json_object"]])
        let request = try GeminiWireFormat().makeRequest(c)
        #expect(request.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
        #expect(request.headers["x-goog-api-key"] == "sk-secret-key")
        #expect(!request.url.contains("sk-secret-key"))
        let body = try JSON.decode(JSONValue.self, from: request.body)
        #expect(body["systemInstruction"] == ["parts": [["text": "Be brief."]]])
        #expect(body["contents"] == [
            ["role": "user", "parts": [["text": "Weather in Paris?"]]],
            ["role": "model", "parts": [["text": "Checking."], ["functionCall": ["name": "get_weather", "args": ["city": "Paris"]]]]],
            ["role": "user", "parts": [["functionResponse": ["name": "get_weather", "response": ["temp_c": 18]]], ["text": "And tomorrow?"]]],
        ])
        #expect(body["generationConfig"] == [
            "temperature": 0.2, "topP": 0.9, "topK": 40, "maxOutputTokens": 100, "stopSequences": ["\n\n"], "candidateCount": 2,
            "responseMimeType": "application/json",
        ])
        #expect(body["tools"] == [["functionDeclarations": [
            ["name": "get_weather", "description": "Weather",
             "parameters": ["type": "object", "properties": ["city": ["type": "string"], "additionalProperties": ["type": "string"]]]],
            ["name": "now"],
        ]]])
        #expect(body["toolConfig"] == ["functionCallingConfig": ["mode": "ANY", "allowedFunctionNames": ["get_weather"]]])

        let plain = try GeminiWireFormat().makeRequest(call(.gemini, base: "http://mock.test/v1beta/", model: "gemini-chunks=3,delay=5", stream: false))
        #expect(plain.url == "http://mock.test/v1beta/models/gemini-chunks=3,delay=5:generateContent")
        let textResult = try GeminiWireFormat().makeRequest(call(.gemini, messages: [
            ["role": "assistant", "tool_calls": [["id": "c1", "function": ["name": "f", "arguments": "{}"]]]],
            ["role": "tool", "tool_call_id": "c1", "content": "plain text"],
        ]))
        let parts = try JSON.decode(JSONValue.self, from: textResult.body)["contents"]?[1]?["parts"]
        #expect(parts == [["functionResponse": ["name": "f", "response": ["result": "plain text"]]]])
    }

    @Test func nonStreamingResponse() throws {
        let body = #"""
            {"candidates": [{"content": {"parts": [{"text": "Paris is "}, {"text": "sunny."}],"role": "model"},"finishReason": "STOP","index": 0}],
             "usageMetadata": {"promptTokenCount": 12,"candidatesTokenCount": 4,"totalTokenCount": 16},"modelVersion": "gemini-2.0-flash","responseId": "r-1"}
            """#
        let completion = try GeminiWireFormat().decodeCompletion(Array(body.utf8), call: call(.gemini, stream: false))
        #expect(completion.id == "r-1")
        #expect(completion.choices.first?.message.content == "Paris is sunny.")
        #expect(completion.choices.first?.finishReason == "stop")
        #expect(completion.usage == Usage(promptTokens: 12, completionTokens: 4))

        let error = #"[{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT"}}]"#
        #expect(GeminiWireFormat().errorMessage(Array(error.utf8)) == "INVALID_ARGUMENT: API key not valid. Please pass a valid API key.")
    }
}

// MARK: - OpenAI and Azure

@Suite struct OpenAIWireStreamTests {
    /// Azure: a prompt-filter chunk with empty `choices` and no model first, content
    /// chunks with filter results, and after the finish a chunk whose choice has no delta.
    static let azure = """
        data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}

        data: {"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-AAz1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_67802d9a6d"}

        data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hi"},"finish_reason":null,"index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-AAz1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_67802d9a6d"}

        data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":" there"},"finish_reason":null,"index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-AAz1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_67802d9a6d"}

        data: {"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-AAz1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_67802d9a6d"}

        data: {"choices":[{"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":8},"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"finish_reason":null,"index":0}],"created":0,"id":"","model":"","object":""}

        data: {"choices":[],"created":1727000000,"id":"chatcmpl-AAz1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_67802d9a6d","usage":{"completion_tokens":2,"prompt_tokens":9,"total_tokens":11}}

        data: [DONE]


        """

    @Test func azureFilterChunksAreDropped() throws {
        let r = replay(Self.azure, OpenAIWireFormat(azure: true), call(.azure))
        #expect(r.error == nil)
        #expect(r.complete)
        try expectOpenAIChunks(r)
        // role, two contents, finish, usage: the two filter-only chunks are not relayed.
        #expect(r.chunks.count == 5)
        #expect(r.accumulator.output == "Hi there")
        #expect(r.choice?.finishReason == "stop")
        #expect(r.accumulator.usage == Usage(promptTokens: 9, completionTokens: 2))
        #expect(r.accumulator.model == "gpt-4o-2024-08-06")
    }

    /// `stream_options.include_usage`: `"usage": null` on every chunk, tool-call deltas,
    /// then a usage-only chunk with `choices: []`.
    static let toolsWithUsageChunk = """
        data: {"id":"chatcmpl-B1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

        data: {"id":"chatcmpl-B1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"lo"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

        data: {"id":"chatcmpl-B1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\\":\\"Paris\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

        data: {"id":"chatcmpl-B1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

        data: {"id":"chatcmpl-B1","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1","choices":[],"usage":{"prompt_tokens":80,"completion_tokens":16,"total_tokens":96,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}

        data: [DONE]


        """

    @Test func usageOnlyFinalChunkAndToolCallDeltas() throws {
        let r = replay(Self.toolsWithUsageChunk, OpenAIWireFormat(), call(.openai))
        #expect(r.error == nil)
        #expect(r.complete)
        #expect(r.chunks.count == 5)
        #expect(r.published.last?["choices"] == [])
        #expect(r.toolCalls == [ToolCall(id: "call_DdmO9pD3xa9XTPNJ32zg2hcA", function: .init(name: "get_weather", arguments: #"{"location":"Paris"}"#))])
        #expect(r.choice?.finishReason == "tool_calls")
        #expect(r.choice?.message.content == nil)
        #expect(r.accumulator.usage?.totalTokens == 96)
        #expect(r.accumulator.usage?.promptTokensDetails?["cached_tokens"] == 0)
        // What is relayed is the provider's own chunk JSON, untouched.
        #expect(String(decoding: r.chunks[1].json, as: UTF8.self).contains(#""arguments":"{\"lo""#))
    }

    /// Servers that put the usage on the finish chunk (vLLM, Groq, some proxies), and no
    /// `[DONE]`-less trouble: the finish alone completes the choice.
    static let usageOnFinishChunk = """
        data: {"id":"cmpl-7","object":"chat.completion.chunk","created":1730000001,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":"Yes"},"finish_reason":null}]}

        data: {"id":"cmpl-7","object":"chat.completion.chunk","created":1730000001,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"."},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":2,"total_tokens":22}}

        data: [DONE]

        """

    @Test func finalChunkWithBothChoicesAndUsage() throws {
        let r = replay(Self.usageOnFinishChunk, OpenAIWireFormat(), call(.openaiCompatible))
        #expect(r.error == nil)
        #expect(r.complete)
        #expect(r.chunks.count == 2)
        #expect(r.accumulator.output == "Yes.")
        #expect(r.choice?.finishReason == "stop")
        #expect(r.accumulator.usage == Usage(promptTokens: 20, completionTokens: 2))
    }

    @Test func errorObjectInsideTheStreamIsAProviderError() throws {
        let stream = """
            data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

            data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}


            """
        let r = replay(stream, OpenAIWireFormat(), call(.openai))
        let error = try #require(r.error as? ProviderError)
        #expect(error.message.contains("The server had an error"))
        #expect(r.accumulator.output == "Hi")
        #expect(!r.complete)
    }
}

@Suite struct WireFormatChoiceTests {
    @Test func everyKindHasAWireFormat() throws {
        for kind in [SluiceConfig.Provider.Kind.openai, .openaiCompatible, .azure, .anthropic, .gemini, .mock] {
            let format = try WireFormats.format(for: kind)
            let request = try format.makeRequest(call(kind))
            #expect(request.url.hasPrefix("http://provider.test/"), "\(kind)")
            // The key goes in a header, never in the URL or the body.
            #expect(!request.url.contains("sk-secret-key"), "\(kind)")
            #expect(!String(decoding: request.body, as: UTF8.self).contains("sk-secret-key"), "\(kind)")
            #expect(request.headers.contains { $0.value.contains("sk-secret-key") }, "\(kind)")
        }
        #expect(try WireFormats.format(for: .anthropic) is AnthropicWireFormat)
        #expect(try WireFormats.format(for: .gemini) is GeminiWireFormat)
    }

    @Test func passthroughBodiesAreSentAsTheyAre() throws {
        var c = call(.anthropic)
        c.passthroughBody = ["model": "claude-x", "max_tokens": 10, "messages": [["role": "user", "content": "raw"]]]
        let body = try JSON.decode(JSONValue.self, from: AnthropicWireFormat().makeRequest(c).body)
        #expect(body == c.passthroughBody)
    }
}
