import SluiceCore
import SluiceHTTPClient

/// Anthropic's Messages API: `POST {base_url}/v1/messages` (a base URL that already ends
/// in `/v1` gets `/messages`), `x-api-key` and `anthropic-version` headers.
///
/// Requests are translated from OpenAI's chat format: system (and developer) messages
/// become the top-level `system`; assistant `tool_calls` become `tool_use` blocks; `tool`
/// messages become `tool_result` blocks of a user turn; consecutive turns of one role are
/// merged, as Anthropic wants them; `tools`, `tool_choice`, `stop` and `max_tokens`
/// (required here: 4096 when the job gives none) are mapped.
///
/// The stream (`message_start`, `content_block_*`, `message_delta`, `message_stop`, `ping`,
/// `error`) is normalised to OpenAI `chat.completion.chunk`s: a role chunk, text and
/// tool-call deltas, and at `message_stop` a finish chunk and a usage chunk with
/// `choices: []`.
public struct AnthropicWireFormat: WireFormat {
    public static let defaultVersion = "2023-06-01"
    /// Anthropic requires `max_tokens`; this is sent when the job sets no limit.
    public static let defaultMaxTokens = 4096

    public init() {}

    public func makeRequest(_ call: ProviderCall) throws -> CurlRequest {
        let body = try call.passthroughBody ?? .object(Self.requestBody(call))
        var headers: HTTPHeaders = [
            "content-type": "application/json",
            "anthropic-version": call.provider.apiVersion ?? Self.defaultVersion,
        ]
        headers["accept"] = call.stream ? "text/event-stream" : "application/json"
        if let key = call.apiKey { headers["x-api-key"] = key.value }
        let base = call.provider.trimmedBaseURL
        let url = base.hasSuffix("/v1") ? base + "/messages" : base + "/v1/messages"
        return CurlRequest(
            method: "POST", url: url, headers: headers, body: try JSON.encode(body),
            connectTimeout: call.connectTimeout, idleTimeout: call.idleTimeout, totalTimeout: call.totalTimeout,
            caFile: call.provider.caFile)
    }

    public func makeStreamDecoder(_ call: ProviderCall) -> any StreamDecoder {
        AnthropicStreamDecoder(provider: call.provider.name, model: call.model)
    }

    public func decodeCompletion(_ body: [UInt8], call: ProviderCall) throws -> ChatCompletion {
        let message: Message
        do {
            message = try JSON.decode(Message.self, from: body)
        } catch {
            throw ProviderError(.protocolError, "\(call.provider.name)'s response is not a Messages API message", retryable: false)
        }
        if message.type == "error" || message.error != nil {
            throw Self.streamError(message.error, provider: call.provider.name)
        }
        var text = ""
        var tools: [ToolCall] = []
        for block in message.content ?? [] {
            switch block.type {
            case "text": text += block.text ?? ""
            case "tool_use":
                tools.append(ToolCall(
                    id: block.id ?? "toolu_\(tools.count)",
                    function: .init(name: block.name ?? "", arguments: WireSupport.jsonText(block.input ?? .object([:])))))
            default: break
            }
        }
        var usage = UsageState()
        if let u = message.usage { usage.assign(u) }
        let choice = CompletionChoice(
            index: 0,
            message: AssistantMessage(content: text.isEmpty && !tools.isEmpty ? nil : text, toolCalls: tools.isEmpty ? nil : tools),
            finishReason: Self.finishReason(message.stopReason))
        return try WireSupport.completion(
            id: message.id ?? "", created: WireSupport.now(), model: message.model ?? call.model, choices: [choice],
            usage: message.usage == nil ? nil : usage.usage)
    }

    /// `{"type": "error", "error": {"type", "message"}}` as `"type: message"`.
    public func errorMessage(_ body: [UInt8]) -> String? {
        if let envelope = try? JSON.decode(Message.self, from: body), let error = envelope.error {
            return [error.type, error.message].compactMap { $0 }.joined(separator: ": ")
        }
        return WireSupport.genericErrorMessage(body)
    }

    // MARK: Finish reasons and errors

    /// Anthropic's `stop_reason` as an OpenAI `finish_reason`.
    static func finishReason(_ stopReason: String?) -> String {
        switch stopReason {
        case "max_tokens", "model_context_window_exceeded": "length"
        case "tool_use": "tool_calls"
        case "refusal": "content_filter"
        default: "stop"  // end_turn, stop_sequence, pause_turn
        }
    }

    /// An `error` event (or error body after a 200): overload and internal errors are
    /// worth another attempt, the rest are not.
    static func streamError(_ error: ErrorBody?, provider: String) -> ProviderError {
        let type = error?.type ?? "error"
        let message = error?.message ?? "no message"
        let retryable = ["overloaded_error", "api_error", "rate_limit_error"].contains(type)
        return ProviderError(.http, "\(provider) sent an error in its stream: \(type): \(message)", retryable: retryable)
    }

    // MARK: Request translation

    static func requestBody(_ call: ProviderCall) throws -> [String: JSONValue] {
        var system: [String] = []
        var turns: [(role: String, blocks: [JSONValue])] = []
        func append(_ role: String, _ blocks: [JSONValue]) {
            guard !blocks.isEmpty else { return }
            if let last = turns.last, last.role == role {
                turns[turns.count - 1].blocks += blocks
            } else {
                turns.append((role, blocks))
            }
        }

        for (i, message) in call.messages.enumerated() {
            switch message["role"]?.stringValue ?? "user" {
            case "system", "developer":
                let text = WireSupport.text(of: message["content"])
                if !text.isEmpty { system.append(text) }
            case "assistant":
                var blocks = contentBlocks(message["content"])
                for (j, toolCall) in (message["tool_calls"]?.arrayValue ?? []).enumerated() {
                    let name = toolCall["function"]?["name"]?.stringValue ?? ""
                    blocks.append([
                        "type": "tool_use",
                        "id": .string(toolCall["id"]?.stringValue ?? "call_\(i)_\(j)"),
                        "name": .string(name),
                        "input": try WireSupport.arguments(toolCall["function"]?["arguments"]?.stringValue, tool: name, message: i),
                    ])
                }
                append("assistant", blocks)
            case "tool", "function":
                var result: [String: JSONValue] = [
                    "type": "tool_result",
                    "tool_use_id": .string(message["tool_call_id"]?.stringValue ?? ""),
                ]
                let blocks = contentBlocks(message["content"])
                if blocks.count == 1, let text = blocks[0]["text"]?.stringValue, blocks[0]["type"] == "text" {
                    result["content"] = .string(text)
                } else if !blocks.isEmpty {
                    result["content"] = .array(blocks)
                }
                append("user", [.object(result)])
            default:
                append("user", contentBlocks(message["content"]))
            }
        }

        var body: [String: JSONValue] = [
            "model": .string(call.model),
            "max_tokens": .number(Double(WireSupport.maxTokens(call.parameters) ?? defaultMaxTokens)),
            "messages": .array(turns.map { turn in
                // One text block reads better as a plain string, and means the same.
                if turn.blocks.count == 1, turn.blocks[0]["type"] == "text", turn.blocks[0]["cache_control"] == nil,
                   let text = turn.blocks[0]["text"] {
                    return ["role": .string(turn.role), "content": text]
                }
                return ["role": .string(turn.role), "content": .array(turn.blocks)]
            }),
            "stream": .bool(call.stream),
        ]
        if !system.isEmpty { body["system"] = .string(system.joined(separator: "\n\n")) }

        let p = call.parameters
        for key in ["temperature", "top_p", "top_k", "thinking"] {
            if let v = p[key], !v.isNull { body[key] = v }
        }
        if let stop = WireSupport.stopSequences(p["stop"]) { body["stop_sequences"] = .array(stop) }
        if let user = p["user"]?.stringValue { body["metadata"] = ["user_id": .string(user)] }

        let functions = try WireSupport.functions(p["tools"])
        if !functions.isEmpty {
            body["tools"] = .array(functions.map { f in
                var tool: [String: JSONValue] = [
                    "name": .string(f.name),
                    "input_schema": f.parameters ?? ["type": "object", "properties": [:]],
                ]
                if let d = f.description { tool["description"] = .string(d) }
                return .object(tool)
            })
            var choice: [String: JSONValue]?
            switch WireSupport.toolChoice(p["tool_choice"]) {
            case .auto?: choice = ["type": "auto"]
            case .none?: choice = ["type": "none"]
            case .required?: choice = ["type": "any"]
            case .function(let name)?: choice = ["type": "tool", "name": .string(name)]
            case nil: choice = nil
            }
            if p["parallel_tool_calls"]?.boolValue == false {
                if choice == nil { choice = ["type": "auto"] }
                if choice?["type"] != "none" { choice?["disable_parallel_tool_use"] = true }
            }
            if let choice { body["tool_choice"] = .object(choice) }
        }
        return body
    }

    static let anthropicBlockTypes: Set<String> = [
        "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking", "search_result",
    ]

    /// OpenAI content (a string or parts) as Anthropic content blocks. Parts that are
    /// already Anthropic blocks pass through.
    static func contentBlocks(_ content: JSONValue?) -> [JSONValue] {
        switch content {
        case .string(let s)?:
            return s.isEmpty ? [] : [["type": "text", "text": .string(s)]]
        case .array(let parts)?:
            return parts.compactMap { part -> JSONValue? in
                var block: JSONValue?
                switch part["type"]?.stringValue {
                case "text":
                    let text = part["text"]?.stringValue ?? ""
                    block = text.isEmpty ? nil : ["type": "text", "text": .string(text)]
                case "image_url":
                    let url = part["image_url"]?["url"]?.stringValue ?? part["image_url"]?.stringValue ?? ""
                    if let (mediaType, data) = WireSupport.dataURL(url) {
                        block = ["type": "image", "source": ["type": "base64", "media_type": .string(mediaType), "data": .string(data)]]
                    } else {
                        block = ["type": "image", "source": ["type": "url", "url": .string(url)]]
                    }
                case "file":
                    if let (mediaType, data) = WireSupport.dataURL(part["file"]?["file_data"]?.stringValue ?? "") {
                        block = ["type": "document", "source": ["type": "base64", "media_type": .string(mediaType), "data": .string(data)]]
                    }
                case let type? where anthropicBlockTypes.contains(type):
                    block = part  // already an Anthropic block
                default:
                    block = nil  // refusal, audio: nothing Anthropic reads
                }
                if var b = block?.objectValue, let cache = part["cache_control"], b["cache_control"] == nil {
                    b["cache_control"] = cache
                    block = .object(b)
                }
                return block
            }
        default:
            return []
        }
    }

    // MARK: Wire types

    struct ErrorBody: Decodable, Sendable {
        var type: String?
        var message: String?
    }

    struct WireUsage: Decodable, Sendable {
        var inputTokens: Int?
        var outputTokens: Int?
        var cacheCreationInputTokens: Int?
        var cacheReadInputTokens: Int?

        enum CodingKeys: String, CodingKey {
            case inputTokens = "input_tokens"
            case outputTokens = "output_tokens"
            case cacheCreationInputTokens = "cache_creation_input_tokens"
            case cacheReadInputTokens = "cache_read_input_tokens"
        }
    }

    struct Block: Decodable, Sendable {
        var type: String
        var text: String?
        var id: String?
        var name: String?
        var input: JSONValue?
    }

    /// A message (non-streaming response, `message_start`) or an error body.
    struct Message: Decodable, Sendable {
        var type: String?
        var id: String?
        var model: String?
        var content: [Block]?
        var stopReason: String?
        var usage: WireUsage?
        var error: ErrorBody?

        enum CodingKeys: String, CodingKey {
            case type, id, model, content, usage, error
            case stopReason = "stop_reason"
        }
    }

    struct Delta: Decodable, Sendable {
        var type: String?
        var text: String?
        var partialJSON: String?
        var stopReason: String?

        enum CodingKeys: String, CodingKey {
            case type, text
            case partialJSON = "partial_json"
            case stopReason = "stop_reason"
        }
    }

    /// One stream event: the fields of every event type, each optional.
    struct Event: Decodable, Sendable {
        var type: String?
        var message: Message?
        var index: Int?
        var contentBlock: Block?
        var delta: Delta?
        var usage: WireUsage?
        var error: ErrorBody?

        enum CodingKeys: String, CodingKey {
            case type, message, index, delta, usage, error
            case contentBlock = "content_block"
        }
    }

    /// Token counts as reported so far. Anthropic's counts are cumulative (`message_delta`
    /// repeats the running output total), so each report replaces the last.
    struct UsageState: Sendable {
        var input = 0
        var output = 0
        var cacheRead: Int?
        var cacheCreation: Int?

        mutating func assign(_ u: AnthropicWireFormat.WireUsage) {
            if let v = u.inputTokens { input = v }
            if let v = u.outputTokens { output = v }
            if let v = u.cacheReadInputTokens { cacheRead = v }
            if let v = u.cacheCreationInputTokens { cacheCreation = v }
        }

        /// OpenAI usage: the prompt counts cached and cache-writing tokens too, as
        /// Anthropic bills them (`input_tokens` excludes both).
        var usage: Usage {
            var details: JSONValue?
            if cacheRead != nil || cacheCreation != nil {
                details = ["cached_tokens": .number(Double(cacheRead ?? 0)), "cache_creation_tokens": .number(Double(cacheCreation ?? 0))]
            }
            return Usage(
                promptTokens: input.adding(saturating: cacheRead ?? 0).adding(saturating: cacheCreation ?? 0), completionTokens: output,
                promptTokensDetails: details)
        }
    }
}

/// Reads one Anthropic stream. Tool calls are numbered in the order their `tool_use`
/// blocks start (the block index counts text blocks too, the tool index does not).
struct AnthropicStreamDecoder: StreamDecoder {
    private let provider: String
    private var builder: ChunkBuilder
    private(set) var isComplete = false
    /// Content block index → its tool call.
    private var tools: [Int: Tool] = [:]
    private var toolCount = 0
    private var usage = AnthropicWireFormat.UsageState()
    private var stopReason: String?

    private struct Tool {
        var index: Int
        var sentArguments = false
    }

    init(provider: String, model: String) {
        self.provider = provider
        // `message_start` brings the message id; this one only if it does not.
        self.builder = ChunkBuilder(
            id: "msg-\(WireSupport.now())-\(UInt32.random(in: .min ... .max))", created: WireSupport.now(), model: model)
    }

    mutating func decode(_ sse: SSEEvent) throws -> [ProviderChunk] {
        guard !isComplete else { return [] }
        let event: AnthropicWireFormat.Event
        do {
            event = try JSON.decode(AnthropicWireFormat.Event.self, from: sse.bytes)
        } catch {
            throw ProviderError(.protocolError, "\(provider) sent a stream event that is not JSON", retryable: true)
        }
        switch event.type ?? sse.event ?? "" {
        case "message_start":
            if let id = event.message?.id { builder.id = id }
            if let model = event.message?.model { builder.model = model }
            if let u = event.message?.usage { usage.assign(u) }
            return [try builder.chunk(ChunkDelta(role: "assistant", content: ""))]

        case "content_block_start":
            guard let block = event.contentBlock, let index = event.index else { return [] }
            switch block.type {
            case "text":
                guard let text = block.text, !text.isEmpty else { return [] }
                return [try builder.chunk(ChunkDelta(content: text))]
            case "tool_use":
                var tool = Tool(index: toolCount)
                toolCount += 1
                var arguments = ""
                if let input = block.input, input != .object([:]), !input.isNull {
                    arguments = WireSupport.jsonText(input)  // a proxy that sends the input whole
                    tool.sentArguments = true
                }
                tools[index] = tool
                return [try builder.chunk(ChunkDelta(toolCalls: [
                    ToolCallDelta(index: tool.index, id: block.id, type: "function", function: .init(name: block.name ?? "", arguments: arguments)),
                ]))]
            default:
                return []  // thinking, server tools: nothing OpenAI clients read
            }

        case "content_block_delta":
            guard let delta = event.delta else { return [] }
            switch delta.type {
            case "text_delta":
                guard let text = delta.text, !text.isEmpty else { return [] }
                return [try builder.chunk(ChunkDelta(content: text))]
            case "input_json_delta":
                guard let index = event.index, let tool = tools[index], let json = delta.partialJSON, !json.isEmpty else { return [] }
                tools[index]?.sentArguments = true
                return [try builder.chunk(ChunkDelta(toolCalls: [ToolCallDelta(index: tool.index, function: .init(arguments: json))]))]
            default:
                return []
            }

        case "content_block_stop":
            // A tool called with no input sends no delta; OpenAI's arguments are "{}".
            guard let index = event.index, let tool = tools[index], !tool.sentArguments else { return [] }
            tools[index]?.sentArguments = true
            return [try builder.chunk(ChunkDelta(toolCalls: [ToolCallDelta(index: tool.index, function: .init(arguments: "{}"))]))]

        case "message_delta":
            if let reason = event.delta?.stopReason { stopReason = reason }
            if let u = event.usage { usage.assign(u) }
            return []

        case "message_stop":
            isComplete = true
            return [
                try builder.chunk(ChunkDelta(), finishReason: AnthropicWireFormat.finishReason(stopReason)),
                try builder.usageChunk(usage.usage),
            ]

        case "error":
            throw AnthropicWireFormat.streamError(event.error, provider: provider)

        default:
            return []  // ping, and event types added later
        }
    }
}
