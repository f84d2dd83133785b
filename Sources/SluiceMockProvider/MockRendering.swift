/// A completion rendered in one provider's wire format: the pieces of its stream, its
/// non-streaming body and its error bodies. The server's stream driver does the pacing
/// and the fault injection the same way for every format:
///
///     head, content(0), …, content(n-1), tail
///
/// with `malformed(i)` in place of a content event, the connection dropped after some,
/// or (no-finish) the tail left out and the last content not marked final.
protocol MockRenderer: Sendable {
    var completion: MockCompletion { get }
    /// How many content events the stream has.
    var contentCount: Int { get }
    var streamContentType: String { get }
    /// What comes before the first content event (no pacing before it).
    func head() -> String
    /// Content event `index`; `final` when it is the last one of a stream that finishes.
    func content(_ index: Int, final: Bool) -> String
    /// Content event `index` cut off in the middle of its JSON.
    func malformed(_ index: Int) -> String
    /// What ends a stream that finishes properly.
    func tail() -> String
    /// The non-streaming response body; `finished: false` leaves out the finish reason.
    func body(finished: Bool) -> String
}

/// The wire formats the mock speaks.
enum MockWire: Sendable {
    case openAI
    /// OpenAI's format as Azure sends it: a prompt-filter chunk with no choices first and
    /// a content-filter chunk whose choice has no delta after the finish.
    case azure
    case anthropic
    /// `sse: false` is `streamGenerateContent` without `alt=sse`: one JSON array.
    case gemini(sse: Bool)

    func renderer(_ completion: MockCompletion) -> any MockRenderer {
        switch self {
        case .openAI: OpenAIRenderer(completion: completion, azure: false)
        case .azure: OpenAIRenderer(completion: completion, azure: true)
        case .anthropic: AnthropicRenderer(completion: completion)
        case .gemini(let sse): GeminiRenderer(completion: completion, sse: sse)
        }
    }

    /// An error body in this format. `code` is OpenAI's `code` field.
    func errorBody(status: Int, message: String, code: String? = nil) -> String {
        switch self {
        case .openAI, .azure:
            let type =
                switch status {
                case 403: "permission_denied"
                case 429: "requests"
                case 500..<600: "server_error"
                default: "invalid_request_error"
                }
            return openAIError(message: message, type: type, code: code)
        case .anthropic:
            let type =
                switch status {
                case 401: "authentication_error"
                case 403: "permission_error"
                case 404: "not_found_error"
                case 413: "request_too_large"
                case 429: "rate_limit_error"
                case 529: "overloaded_error"
                case 500..<600: "api_error"
                default: "invalid_request_error"
                }
            return "{\"type\":\"error\",\"error\":{\"type\":\"\(type)\",\"message\":\(jsonString(message))}}"
        case .gemini:
            let name =
                switch status {
                case 400: "INVALID_ARGUMENT"
                case 401: "UNAUTHENTICATED"
                case 403: "PERMISSION_DENIED"
                case 404: "NOT_FOUND"
                case 429: "RESOURCE_EXHAUSTED"
                case 500: "INTERNAL"
                case 503: "UNAVAILABLE"
                case 504: "DEADLINE_EXCEEDED"
                default: status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION"
                }
            return "{\"error\":{\"code\":\(status),\"message\":\(jsonString(message)),\"status\":\"\(name)\"}}"
        }
    }

    /// The error a request scripts with the status knob, and its OpenAI `code`.
    func scriptedError(_ status: Int) -> (message: String, code: String?) {
        switch status {
        case 400: ("Invalid request (scripted by x-mock-status).", nil)
        case 401: ("Incorrect API key provided (scripted by x-mock-status).", "invalid_api_key")
        case 403: ("Permission denied (scripted by x-mock-status).", nil)
        case 404: ("The model does not exist (scripted by x-mock-status).", "model_not_found")
        case 429: ("Rate limit reached for requests (scripted by x-mock-status).", "rate_limit_exceeded")
        case 529: ("Overloaded (scripted by x-mock-status).", nil)
        case 500..<600: ("The server had an error while processing your request (scripted by x-mock-status).", nil)
        default: ("Scripted error status \(status).", nil)
        }
    }
}

// MARK: OpenAI

/// OpenAI chat completions: `chat.completion.chunk` events, then `[DONE]`.
struct OpenAIRenderer: MockRenderer {
    let completion: MockCompletion
    let azure: Bool
    private let header: String
    private let toolCallID: String

    init(completion: MockCompletion, azure: Bool) {
        self.completion = completion
        self.azure = azure
        self.header =
            "\"id\":\"chatcmpl-mock-\(completion.hash)\",\"created\":\(completion.created),\"model\":\(jsonString(completion.model)),\"system_fingerprint\":\"fp_mock\""
        self.toolCallID = "call_mock_\(completion.hash)"
    }

    var contentCount: Int { self.completion.pieces.count }
    var streamContentType: String { "text/event-stream; charset=utf-8" }

    private var finishReason: String {
        switch self.completion.finish {
        case .stop: "stop"
        case .length: "length"
        case .toolCalls: "tool_calls"
        }
    }

    private var usage: String {
        let c = self.completion
        return "{\"prompt_tokens\":\(c.promptTokens),\"completion_tokens\":\(c.completionTokens),\"total_tokens\":\(c.promptTokens + c.completionTokens)}"
    }

    /// One SSE event carrying a `chat.completion.chunk` with a single choice.
    private func chunkEvent(delta: String, finishReason: String? = nil) -> String {
        let finish = finishReason.map { "\"\($0)\"" } ?? "null"
        // With include_usage, OpenAI sends `"usage": null` on every chunk but the last.
        let usage = self.completion.includeUsage ? ",\"usage\":null" : ""
        return "data: {\"object\":\"chat.completion.chunk\",\(self.header),\"choices\":[{\"index\":0,\"delta\":\(delta),\"logprobs\":null,\"finish_reason\":\(finish)}]\(usage)}\n\n"
    }

    private static let filterResults =
        "{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}"

    func head() -> String {
        let role =
            self.completion.toolCall == nil
            ? self.chunkEvent(delta: "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}")
            : self.chunkEvent(delta: "{\"role\":\"assistant\",\"content\":null,\"refusal\":null}")
        guard self.azure else { return role }
        let promptFilter =
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":\(Self.filterResults)}]}\n\n"
        return promptFilter + role
    }

    private func delta(_ index: Int) -> String {
        let piece = jsonString(self.completion.pieces[index])
        guard let call = self.completion.toolCall else { return "{\"content\":\(piece)}" }
        if index == 0 {
            return "{\"tool_calls\":[{\"index\":0,\"id\":\"\(self.toolCallID)\",\"type\":\"function\",\"function\":{\"name\":\(jsonString(call.name)),\"arguments\":\(piece)}}]}"
        }
        return "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\(piece)}}]}"
    }

    func content(_ index: Int, final: Bool) -> String {
        self.chunkEvent(delta: self.delta(index))
    }

    func malformed(_ index: Int) -> String {
        "data: {\"object\":\"chat.completion.chunk\",\(self.header),\"choices\":[{\"index\":0,\"delta\":\(self.delta(index))\n\n"
    }

    func tail() -> String {
        var tail = self.chunkEvent(delta: "{}", finishReason: self.finishReason)
        if self.azure {
            let end = self.completion.pieces.reduce(0) { $0 + $1.utf8.count }
            tail +=
                "data: {\"choices\":[{\"content_filter_offsets\":{\"check_offset\":0,\"start_offset\":0,\"end_offset\":\(end)},\"content_filter_results\":\(Self.filterResults),\"finish_reason\":null,\"index\":0}],\"object\":\"chat.completion.chunk\",\(self.header)}\n\n"
        }
        if self.completion.includeUsage {
            tail += "data: {\"object\":\"chat.completion.chunk\",\(self.header),\"choices\":[],\"usage\":\(self.usage)}\n\n"
        }
        return tail + "data: [DONE]\n\n"
    }

    func body(finished: Bool) -> String {
        let finish = finished ? "\"\(self.finishReason)\"" : "null"
        let message: String
        if let call = self.completion.toolCall {
            message =
                "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"\(self.toolCallID)\",\"type\":\"function\",\"function\":{\"name\":\(jsonString(call.name)),\"arguments\":\(jsonString(call.arguments))}}],\"refusal\":null}"
        } else {
            message = "{\"role\":\"assistant\",\"content\":\(jsonString(self.completion.text)),\"refusal\":null}"
        }
        return "{\"object\":\"chat.completion\",\(self.header),\"choices\":[{\"index\":0,\"message\":\(message),\"logprobs\":null,\"finish_reason\":\(finish)}],\"usage\":\(self.usage)}"
    }
}

/// An OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.
func openAIError(message: String, type: String, code: String?) -> String {
    "{\"error\":{\"message\":\(jsonString(message)),\"type\":\(jsonString(type)),\"param\":null,\"code\":\(code.map(jsonString) ?? "null")}}"
}

// MARK: Anthropic

/// Anthropic's Messages API stream: `message_start`, one content block (text or
/// `tool_use`) with a `ping` after its start, `message_delta` with the stop reason and
/// the cumulative output tokens, `message_stop`.
struct AnthropicRenderer: MockRenderer {
    let completion: MockCompletion

    var contentCount: Int { self.completion.pieces.count }
    var streamContentType: String { "text/event-stream; charset=utf-8" }

    private var id: String { "msg_mock_\(self.completion.hash)" }
    private var toolUseID: String { "toolu_mock_\(self.completion.hash)" }

    private var stopReason: String {
        switch self.completion.finish {
        case .stop: "end_turn"
        case .length: "max_tokens"
        case .toolCalls: "tool_use"
        }
    }

    private static func event(_ type: String, _ data: String) -> String {
        "event: \(type)\ndata: \(data)\n\n"
    }

    func head() -> String {
        let c = self.completion
        let start =
            "{\"type\":\"message_start\",\"message\":{\"id\":\"\(self.id)\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\(jsonString(c.model)),\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":\(c.promptTokens),\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}"
        let block =
            c.toolCall.map { "{\"type\":\"tool_use\",\"id\":\"\(self.toolUseID)\",\"name\":\(jsonString($0.name)),\"input\":{}}" }
            ?? "{\"type\":\"text\",\"text\":\"\"}"
        return Self.event("message_start", start)
            + Self.event("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":\(block)}")
            + Self.event("ping", "{\"type\": \"ping\"}")
    }

    private func delta(_ index: Int) -> String {
        let piece = jsonString(self.completion.pieces[index])
        return self.completion.toolCall == nil
            ? "{\"type\":\"text_delta\",\"text\":\(piece)}"
            : "{\"type\":\"input_json_delta\",\"partial_json\":\(piece)}"
    }

    func content(_ index: Int, final: Bool) -> String {
        Self.event("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":\(self.delta(index))}")
    }

    func malformed(_ index: Int) -> String {
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":\(self.delta(index))\n\n"
    }

    func tail() -> String {
        Self.event("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
            + Self.event(
                "message_delta",
                "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"\(self.stopReason)\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":\(self.completion.completionTokens)}}")
            + Self.event("message_stop", "{\"type\":\"message_stop\"}")
    }

    func body(finished: Bool) -> String {
        let c = self.completion
        let content =
            c.toolCall.map { "{\"type\":\"tool_use\",\"id\":\"\(self.toolUseID)\",\"name\":\(jsonString($0.name)),\"input\":\($0.arguments)}" }
            ?? "{\"type\":\"text\",\"text\":\(jsonString(c.text))}"
        let stop = finished ? "\"\(self.stopReason)\"" : "null"
        return "{\"id\":\"\(self.id)\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\(jsonString(c.model)),\"content\":[\(content)],\"stop_reason\":\(stop),\"stop_sequence\":null,\"usage\":{\"input_tokens\":\(c.promptTokens),\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":\(c.completionTokens)}}"
    }
}

// MARK: Gemini

/// Gemini's `GenerateContentResponse`s: one per content piece, each with the running
/// `usageMetadata`; the last carries `finishReason`. A function call comes whole, in one
/// response. SSE events end with CRLF pairs, as Google sends them.
struct GeminiRenderer: MockRenderer {
    let completion: MockCompletion
    let sse: Bool

    var contentCount: Int { self.completion.toolCall == nil ? self.completion.pieces.count : 1 }
    var streamContentType: String { self.sse ? "text/event-stream" : "application/json; charset=UTF-8" }

    private var finishReason: String {
        self.completion.finish == .length ? "MAX_TOKENS" : "STOP"
    }

    private func usage(candidates: Int) -> String {
        let p = self.completion.promptTokens
        return "{\"promptTokenCount\":\(p),\"candidatesTokenCount\":\(candidates),\"totalTokenCount\":\(p + candidates)}"
    }

    private func response(parts: String, finished: Bool, candidates: Int) -> String {
        let finish = finished ? ",\"finishReason\":\"\(self.finishReason)\"" : ""
        return "{\"candidates\":[{\"content\":{\"parts\":[\(parts)],\"role\":\"model\"}\(finish),\"index\":0}],\"usageMetadata\":\(self.usage(candidates: candidates)),\"modelVersion\":\(jsonString(self.completion.model)),\"responseId\":\"mock-\(self.completion.hash)\"}"
    }

    private func parts(_ index: Int) -> String {
        if let call = self.completion.toolCall {
            return "{\"functionCall\":{\"name\":\(jsonString(call.name)),\"args\":\(call.arguments)}}"
        }
        return "{\"text\":\(jsonString(self.completion.pieces[index]))}"
    }

    private func frame(_ json: String, first: Bool) -> String {
        self.sse ? "data: \(json)\r\n\r\n" : (first ? "" : ",\r\n") + json
    }

    func head() -> String { self.sse ? "" : "[" }

    func content(_ index: Int, final: Bool) -> String {
        let tokens = final ? self.completion.completionTokens : min(index + 1, self.completion.completionTokens)
        return self.frame(self.response(parts: self.parts(index), finished: final, candidates: tokens), first: index == 0)
    }

    func malformed(_ index: Int) -> String {
        let json = self.response(parts: self.parts(index), finished: false, candidates: index + 1)
        return self.frame(String(json.utf8.prefix(json.utf8.count / 2))!, first: index == 0)
    }

    func tail() -> String {
        // Without content events the finish reason needs a response of its own.
        let empty = self.contentCount == 0 ? self.frame(self.response(parts: "", finished: true, candidates: 0), first: true) : ""
        return self.sse ? empty : empty + "]"
    }

    func body(finished: Bool) -> String {
        let parts =
            self.completion.toolCall == nil
            ? (self.completion.pieces.isEmpty ? "" : "{\"text\":\(jsonString(self.completion.text))}") : self.parts(0)
        return self.response(parts: parts, finished: finished, candidates: self.completion.completionTokens)
    }
}
