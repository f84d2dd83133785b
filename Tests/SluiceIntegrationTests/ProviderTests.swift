import Foundation
import SluiceCore
import SluiceMockProvider
import Testing

/// Every provider kind, streaming and not, with text and with a tool call, through the
/// whole pipeline (Kafka → worker → the mock provider speaking that kind's wire format
/// over HTTP → Redis → result topic); then the timing metrics against paced streams.
/// Serialized: the metrics tests measure time, which parallel load would blur.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(5)))
struct ProviderTests {
    /// A provider of each kind, all served by the one mock: OpenAI and OpenAI-compatible
    /// at `…/v1`, Azure, Anthropic and Gemini at the server root.
    static func configureProviders(_ config: inout SluiceConfig) {
        let v1 = config.providers[0].baseURL  // the mock's OpenAI base, http://127.0.0.1:PORT/v1
        let root = String(v1.dropLast(3))
        config.providers += [
            .init(name: "openai", kind: .openai, baseURL: v1),
            .init(name: "compat", kind: .openaiCompatible, baseURL: v1),
            .init(name: "compat-no-usage", kind: .openaiCompatible, baseURL: v1, streamOptions: false),
            .init(name: "azure", kind: .azure, baseURL: root, apiVersion: "2024-10-21"),
            .init(name: "anthropic", kind: .anthropic, baseURL: root),
            .init(name: "gemini", kind: .gemini, baseURL: root),
        ]
    }

    static let models = [
        "openai": "gpt-4o-mini", "compat": "llama-3.1-8b", "azure": "gpt4o-deployment",
        "anthropic": "claude-3-5-haiku-latest", "gemini": "gemini-2.0-flash",
    ]

    static let weatherTool: JSONValue = [[
        "type": "function",
        "function": [
            "name": "get_weather", "description": "Current weather in a city",
            "parameters": [
                "type": "object", "required": ["location"],
                "properties": ["location": ["type": "string"], "unit": ["type": "string", "enum": ["celsius", "fahrenheit"]]],
            ],
        ],
    ]]

    static let textPrompt = "Tell me about rivers"
    static let toolPrompt = "What is the weather in Paris?"

    /// The mock's prompt tokens for one user message: 4 + ⌈UTF-8 bytes / 4⌉.
    static func promptTokens(_ text: String) -> Int { 4 + (text.utf8.count + 3) / 4 }

    static let kinds = ["openai", "compat", "azure", "anthropic", "gemini"]

    @Test func everyKindWithTextAndToolCallsStreamingAndNot() async throws {
        try await TestStack.with(configure: Self.configureProviders) { stack in
            var ids: [String: (kind: String, stream: Bool, tool: Bool)] = [:]
            let key = "sk-test-\(UUID().uuidString.prefix(8))"
            for kind in Self.kinds {
                let model = try #require(Self.models[kind])
                for stream in [true, false] {
                    for tool in [false, true] {
                        let id = "\(kind)-\(stream ? "s" : "n")-\(tool ? "tool" : "text")-\(UUID().uuidString.prefix(6))"
                        ids[id] = (kind, stream, tool)
                        var job: [String: JSONValue] = [
                            "id": .string(id), "provider": .string(kind), "model": .string(model), "stream": .bool(stream),
                            "messages": [["role": "user", "content": .string(tool ? Self.toolPrompt : Self.textPrompt)]],
                            "api_key": .string(key), "temperature": 0.2,
                        ]
                        if tool { job["tools"] = Self.weatherTool }
                        try await stack.submit(.object(job))
                    }
                }
            }
            // An OpenAI-compatible server that is not asked for usage: it is estimated.
            try await stack.submit(["id": "nousage", "provider": "compat-no-usage", "model": "m",
                                    "messages": [["role": "user", "content": "Count the rivers"]]])
            let results = try await stack.waitForResults(ids.count + 1)

            var texts: Set<String> = []
            var arguments: Set<String> = []
            for (id, shape) in ids {
                let kind = shape.kind
                let result = try #require(results[id], "no result for \(id)")
                #expect(result.status == .succeeded, "\(id): \(String(describing: result.error))")
                #expect(result.provider == kind)
                #expect(result.metrics.streamComplete, "\(id)")
                #expect(result.metrics.attempts == 1, "\(id)")
                #expect(result.metrics.usageSource == .provider, "\(id)")

                let usage = try #require(result.usage, "\(id)")
                #expect(usage.promptTokens == Self.promptTokens(shape.tool ? Self.toolPrompt : Self.textPrompt), "\(id)")
                #expect(usage.completionTokens == 8, "\(id)")  // the mock's default: 8 pieces
                #expect(usage.totalTokens == usage.promptTokens + usage.completionTokens, "\(id)")
                #expect(result.metrics.inputTokens == usage.promptTokens)
                #expect(result.metrics.outputTokens == usage.completionTokens)

                let events = try await stack.events(of: id)
                #expect(events.map { $0["seq"]?.intValue ?? -1 } == Array(1...events.count), "\(id) seq")
                #expect(events.last?["event"] == "chat_finished")
                let chunks = events.filter { $0["event"] == "chunk" }.compactMap { $0["data"] }
                #expect(!chunks.isEmpty, "\(id)")
                // Whatever the provider, what is published is an OpenAI chunk.
                #expect(chunks.allSatisfy { $0["object"] == "chat.completion.chunk" && $0["choices"]?.arrayValue != nil }, "\(id)")
                if !shape.stream { #expect(chunks.count == 1, "\(id): a non-streaming reply is one chunk") }
                if shape.stream {
                    // Piece by piece; Gemini's function calls come whole (the call, then usage).
                    #expect(chunks.count >= (kind == "gemini" && shape.tool ? 2 : 9), "\(id): \(chunks.count) chunks")
                }

                // The key went to the provider in a header, and nowhere else.
                let published = try String(decoding: JSON.encode(JSONValue.array(events)), as: UTF8.self)
                #expect(!published.contains(key), "\(id): the API key was published")
                #expect(!String(decoding: try JSON.encode(result), as: UTF8.self).contains(key))

                let choice = try #require(result.choices.first, "\(id)")
                if shape.tool {
                    #expect(choice.finishReason == "tool_calls", "\(id)")
                    let call = try #require(choice.message.toolCalls?.first, "\(id)")
                    #expect(choice.message.toolCalls?.count == 1)
                    #expect(call.function.name == "get_weather")
                    #expect(!call.id.isEmpty)
                    let args = try JSON.decode(JSONValue.self, from: Array(call.function.arguments.utf8))
                    #expect(args["unit"] == "celsius", "\(id): \(call.function.arguments)")
                    #expect(args["location"]?.stringValue?.isEmpty == false, "\(id): \(call.function.arguments)")
                    arguments.insert(call.function.arguments)
                    // The tool-call deltas on Redis add up to the call.
                    let deltas = chunks.flatMap { $0["choices"]?.arrayValue ?? [] }
                        .flatMap { $0["delta"]?["tool_calls"]?.arrayValue ?? [] }
                    #expect(deltas.compactMap { $0["function"]?["arguments"]?.stringValue }.joined() == call.function.arguments, "\(id)")
                    #expect(deltas.compactMap { $0["function"]?["name"]?.stringValue }.joined() == "get_weather", "\(id)")
                    #expect(result.chatOutput?.isEmpty != false)
                } else {
                    #expect(choice.finishReason == "stop", "\(id)")
                    let output = try #require(result.chatOutput, "\(id)")
                    #expect(output.split(separator: " ").count == 8, "\(id): \(output)")
                    #expect(chunks.map(chunkText).joined() == output, "\(id) chunks vs chat_output")
                    texts.insert(output)
                }

                // The request went out in the kind's own shape.
                let sent = try #require(events.first { $0["event"] == "chat_completion_request" }?["data"]?["body"], "\(id)")
                switch kind {
                case "anthropic":
                    #expect(sent["max_tokens"] == 4096)
                    #expect(sent["messages"]?.arrayValue?.count == 1)
                    if shape.tool { #expect(sent["tools"]?.arrayValue?.first?["input_schema"]?["type"] == "object") }
                case "gemini":
                    #expect(sent["contents"]?.arrayValue?.first?["role"] == "user")
                    #expect(sent["generationConfig"]?["temperature"] == 0.2)
                    if shape.tool { #expect(sent["tools"]?.arrayValue?.first?["functionDeclarations"] != nil) }
                default:
                    #expect(sent["messages"]?.arrayValue?.count == 1)
                }
            }
            // The mock's answer is a function of the request: the same in every format,
            // streamed or not.
            #expect(texts.count == 1, "\(texts)")
            #expect(arguments.count == 1, "\(arguments)")

            let result = try #require(results["nousage"])
            #expect(result.status == .succeeded)
            #expect(result.metrics.usageSource == .estimated)
            let sent = try await stack.events(of: "nousage").first { $0["event"] == "chat_completion_request" }
            #expect(sent?["data"]?["body"]?["stream_options"] == nil)
            // ⌈UTF-8 bytes / 4⌉ of the output.
            #expect(result.metrics.outputTokens == ((result.chatOutput ?? "").utf8.count + 3) / 4)
        }
    }

    @Test func providerErrorsAndBrokenStreamsInEachFormat() async throws {
        try await TestStack.with(configure: Self.configureProviders) { stack in
            // Knobs in the model name: 429 is waited out (an interactive job for as long as
            // its timeout), 400 fails.
            try await stack.submit(["id": "a429", "provider": "anthropic", "model": "claude-status=429",
                                    "api_key": "k", "chat_input": "x", "timeout_s": 2])
            try await stack.submit(["id": "g400", "provider": "gemini", "model": "gemini-status=400",
                                    "api_key": "k", "chat_input": "x"])
            try await stack.submit(["id": "nokey", "provider": "anthropic", "model": "claude", "chat_input": "x"])
            // Streams that end without their end marker, or break: never a success.
            for kind in ["anthropic", "gemini"] {
                try await stack.submit(["id": .string("\(kind)-nofinish"), "provider": .string(kind),
                                        "model": .string("\(kind)-no-finish=true,chunks=3"), "api_key": "k", "chat_input": "x"])
                try await stack.submit(["id": .string("\(kind)-malformed"), "provider": .string(kind),
                                        "model": .string("\(kind)-malformed-at=2"), "api_key": "k", "chat_input": "x"])
            }
            let results = try await stack.waitForResults(7, timeout: .seconds(90))

            for kind in ["anthropic", "gemini"] {
                for id in ["\(kind)-nofinish", "\(kind)-malformed"] {
                    let result = try #require(results[id])
                    #expect(result.status == .failed, "\(id)")
                    #expect(result.error?.type == "provider_protocol_error", "\(id): \(String(describing: result.error))")
                }
            }

            let a = try #require(results["a429"])
            #expect(a.status == .failed)
            #expect(a.error?.providerStatus == 429)
            #expect(a.error?.type == "expired")
            #expect(a.error?.message.contains("rate_limit_error") == true, "\(String(describing: a.error))")
            #expect(a.metrics.attempts == 0)

            let g = try #require(results["g400"])
            #expect(g.status == .failed)
            #expect(g.error?.providerStatus == 400)
            #expect(g.error?.message.contains("INVALID_ARGUMENT") == true, "\(String(describing: g.error))")
            #expect(g.metrics.attempts == 1)

            // No key configured: the mock answers as Anthropic does. What a provider says
            // of the operator's key is for the operator's log, not the tenant's result.
            let n = try #require(results["nokey"])
            #expect(n.error?.providerStatus == 401)
            #expect(n.error?.message == "anthropic answered 401", "\(String(describing: n.error))")
        }
    }

    // MARK: Metrics

    /// Paced mock streams: the first content chunk 300 ms after the request, then nine more
    /// 50 ms apart. Tolerances for a loaded 2-core machine: time to first token ±40 ms,
    /// inter-token latency ±15 ms, latency ±60 ms.
    @Test func timingMetricsMatchThePacing() async throws {
        try await TestStack.with(configure: Self.configureProviders) { stack in
            // One job at a time, so that they do not slow each other down.
            for (n, kind) in ["openai", "azure", "anthropic", "gemini"].enumerated() {
                let id = "paced-\(kind)-\(UUID().uuidString.prefix(6))"
                try await stack.submit(["id": .string(id), "provider": .string(kind), "model": "paced-chunks=10,delay=50,ttft=300",
                                        "api_key": "k", "chat_input": "Pace yourself"])
                let result = try #require(try await stack.waitForResults(n + 1)[id])
                #expect(result.status == .succeeded, "\(kind): \(String(describing: result.error))")
                let m = result.metrics
                #expect(m.streamComplete, "\(kind)")
                #expect(m.outputTokens == 10, "\(kind)")
                let ttft = try #require(m.timeToFirstTokenS, "\(kind)")
                let itl = try #require(m.interTokenLatencyS, "\(kind)")
                let tps = try #require(m.tokensPerSecond, "\(kind)")
                #expect(abs(ttft - 0.300) <= 0.040, "\(kind): time_to_first_token_s \(ttft)")
                #expect(abs(itl - 0.050) <= 0.015, "\(kind): inter_token_latency_s \(itl)")
                #expect(abs(m.latencyS - 0.750) <= 0.060, "\(kind): latency_s \(m.latencyS)")
                #expect(m.latencyS >= ttft + 9 * 0.050 - 0.005, "\(kind): latency_s \(m.latencyS) vs ttft \(ttft)")
                // tokens_per_second is output_tokens over the generation time, as defined.
                #expect(abs(tps - Double(m.outputTokens) / (m.latencyS - ttft)) < 1e-6, "\(kind): tokens_per_second \(tps)")
                #expect(abs(tps - 10 / 0.450) <= 10 / 0.450 * 0.25, "\(kind): tokens_per_second \(tps)")
            }
        }
    }
}
