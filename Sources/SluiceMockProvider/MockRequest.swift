import Foundation

/// Any JSON value, for the parts of a request whose shape varies (content blocks, tool
/// schemas).
enum MockJSON: Decodable, Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([MockJSON])
    case object([String: MockJSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? container.decode(Double.self) {
            self = .number(n)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([MockJSON].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: MockJSON].self))
        }
    }

    subscript(key: String) -> MockJSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var array: [MockJSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var object: [String: MockJSON]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// Compact JSON text with sorted keys.
    var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n.rounded() == n && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .string(let s): return jsonString(s)
        case .array(let a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { jsonString($0) + ":" + o[$0]!.text }.joined(separator: ",") + "}"
        }
    }

    /// Text in a content value: a string, or the `text` of each block or part.
    var flattenedText: String {
        switch self {
        case .string(let s): return s
        case .array(let items): return items.compactMap { $0.string ?? $0["text"]?.string }.joined(separator: "\n")
        default: return ""
        }
    }
}

/// What the mock needs of a request, whatever wire format it came in: the messages (as
/// roles and text), the tools offered, and the limits.
struct MockRequest {
    struct Message {
        /// `system`, `user`, `assistant`, or `tool` (a tool result).
        var role: String
        var text: String
    }

    struct Tool {
        var name: String
        /// The JSON Schema of the arguments.
        var parameters: MockJSON?
    }

    var model: String?
    var messages: [Message]
    var tools: [Tool] = []
    var maxTokens: Int?
    var stream: Bool
    /// OpenAI's `stream_options.include_usage`; the other formats always report usage.
    var includeUsage: Bool = true

    /// The request asks for a tool call: it offers tools, and its last message is the
    /// user's and mentions the weather.
    var wantsToolCall: Bool {
        guard let first = tools.first, !first.name.isEmpty, let last = messages.last, last.role == "user" else { return false }
        return last.text.range(of: "weather", options: .caseInsensitive) != nil
    }

    /// The last user message, whose hash seeds the words.
    var lastUserText: String {
        (messages.last { $0.role == "user" } ?? messages.last)?.text ?? ""
    }
}

struct RequestError: Error {
    var message: String
}

// MARK: OpenAI

/// The part of an OpenAI chat completions request the mock reads.
struct ChatRequest: Decodable {
    struct Message: Decodable {
        var role: String
        /// `content` flattened: a string, or the text parts of a content array.
        var text: String

        enum CodingKeys: String, CodingKey { case role, content }
        struct Part: Decodable { var type: String?; var text: String? }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.role = try container.decode(String.self, forKey: .role)
            if let text = try? container.decodeIfPresent(String.self, forKey: .content) {
                self.text = text
            } else if let parts = try? container.decodeIfPresent([Part].self, forKey: .content) {
                self.text = parts.compactMap(\.text).joined(separator: "\n")
            } else {
                self.text = ""
            }
        }
    }

    struct StreamOptions: Decodable {
        var includeUsage: Bool?
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }

    struct Tool: Decodable {
        struct Function: Decodable {
            var name: String
            var parameters: MockJSON?
        }
        var function: Function?
    }

    var model: String?
    var messages: [Message]
    var stream: Bool?
    var streamOptions: StreamOptions?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var tools: [Tool]?

    enum CodingKeys: String, CodingKey {
        case model, messages, stream, tools
        case streamOptions = "stream_options"
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
    }

    var mockRequest: MockRequest {
        MockRequest(
            model: model,
            messages: messages.map { .init(role: $0.role == "developer" ? "system" : $0.role, text: $0.text) },
            tools: (tools ?? []).compactMap { $0.function.map { MockRequest.Tool(name: $0.name, parameters: $0.parameters) } },
            maxTokens: maxCompletionTokens ?? maxTokens,
            stream: stream == true,
            includeUsage: streamOptions?.includeUsage ?? false)
    }
}

// MARK: Anthropic

/// An Anthropic Messages API request.
struct AnthropicRequest: Decodable {
    struct Message: Decodable {
        var role: String
        var content: MockJSON
    }

    struct Tool: Decodable {
        var name: String?
        var inputSchema: MockJSON?
        enum CodingKeys: String, CodingKey {
            case name
            case inputSchema = "input_schema"
        }
    }

    var model: String?
    var messages: [Message]
    var system: MockJSON?
    var maxTokens: Int?
    var stream: Bool?
    var tools: [Tool]?

    enum CodingKeys: String, CodingKey {
        case model, messages, system, stream, tools
        case maxTokens = "max_tokens"
    }

    func mockRequest() throws(RequestError) -> MockRequest {
        guard let maxTokens else { throw RequestError(message: "max_tokens: Field required") }
        guard !messages.isEmpty else { throw RequestError(message: "messages: at least one message is required") }
        var out: [MockRequest.Message] = []
        if let system, !system.flattenedText.isEmpty { out.append(.init(role: "system", text: system.flattenedText)) }
        for m in messages {
            guard m.role == "user" || m.role == "assistant" else {
                throw RequestError(message: "messages: roles must be \"user\" or \"assistant\", got \"\(m.role)\"")
            }
            // A user turn carries tool results as blocks; each is a tool message here.
            var texts: [String] = []
            for block in m.content.array ?? [] where block["type"]?.string == "tool_result" {
                out.append(.init(role: "tool", text: block["content"]?.flattenedText ?? ""))
            }
            if let s = m.content.string {
                texts.append(s)
            } else {
                texts += (m.content.array ?? []).compactMap { $0["type"]?.string == "text" ? $0["text"]?.string : nil }
            }
            if !texts.isEmpty || m.content.array?.isEmpty != false {
                out.append(.init(role: m.role, text: texts.joined(separator: "\n")))
            }
        }
        return MockRequest(
            model: model, messages: out,
            tools: (tools ?? []).compactMap { t in t.name.map { MockRequest.Tool(name: $0, parameters: t.inputSchema) } },
            maxTokens: maxTokens, stream: stream == true)
    }
}

// MARK: Gemini

/// A Gemini `generateContent` request (the model is in the path).
struct GeminiRequest: Decodable {
    struct Content: Decodable {
        var role: String?
        var parts: [MockJSON]?
    }

    struct Tool: Decodable {
        struct Declaration: Decodable {
            var name: String?
            var parameters: MockJSON?
        }
        var functionDeclarations: [Declaration]?
    }

    struct GenerationConfig: Decodable {
        var maxOutputTokens: Int?
    }

    var contents: [Content]
    var systemInstruction: Content?
    var tools: [Tool]?
    var generationConfig: GenerationConfig?

    func mockRequest(model: String, stream: Bool) throws(RequestError) -> MockRequest {
        guard !contents.isEmpty else { throw RequestError(message: "* GenerateContentRequest.contents: contents is not specified") }
        var out: [MockRequest.Message] = []
        if let system = systemInstruction?.parts, !system.isEmpty {
            out.append(.init(role: "system", text: system.compactMap { $0["text"]?.string }.joined(separator: "\n")))
        }
        for c in contents {
            let parts = c.parts ?? []
            guard !parts.isEmpty else { throw RequestError(message: "* GenerateContentRequest.contents.parts: contents.parts must not be empty") }
            let role = c.role ?? "user"
            guard role == "user" || role == "model" else {
                throw RequestError(message: "Please use a valid role: user, model.")
            }
            for part in parts {
                if let response = part["functionResponse"] {
                    out.append(.init(role: "tool", text: response["response"]?.text ?? ""))
                }
            }
            let texts = parts.compactMap { $0["text"]?.string }
            if !texts.isEmpty || parts.contains(where: { $0["functionCall"] != nil }) {
                out.append(.init(role: role == "model" ? "assistant" : "user", text: texts.joined()))
            }
        }
        let declarations = (tools ?? []).flatMap { $0.functionDeclarations ?? [] }
        return MockRequest(
            model: model, messages: out,
            tools: declarations.compactMap { d in d.name.map { MockRequest.Tool(name: $0, parameters: d.parameters) } },
            maxTokens: generationConfig?.maxOutputTokens, stream: stream)
    }
}
