import Foundation
import SluiceCore

// What the wire formats that translate OpenAI requests (Anthropic, Gemini) share: reading
// OpenAI messages and parameters, and building normalised chunks and completions.

extension SluiceConfig.Provider {
    /// `base_url` without a trailing slash.
    var trimmedBaseURL: String {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }
}

extension WireSupport {
    /// A value from a job (a model, an Azure deployment) as one segment of a provider URL.
    /// What could leave the segment is refused: `/`, `\\`, `?`, `#`, `%`, control
    /// characters, and the dot segments `.` and `..`. Anything else outside letters,
    /// digits and `-._~=,` is percent-encoded.
    static func pathSegment(_ value: String, field: String) throws -> String {
        guard !value.isEmpty, value != ".", value != ".." else {
            throw SluiceError(.invalidRequest, "\(field) \"\(value)\" cannot be used in a provider URL; give a model or deployment name")
        }
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "="), UInt8(ascii: ","):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "%"), 0..<0x20, 0x7F:
                throw SluiceError(
                    .invalidRequest,
                    "\(field) \"\(value)\" contains characters a provider URL cannot carry (/, \\, ?, #, % or control characters); give a model or deployment name")
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 0xF)])
            }
        }
        return out
    }
}

/// Builds the normalised `chat.completion.chunk`s of one response: every chunk shares the
/// response's id, creation time and model, and each is encoded exactly once.
struct ChunkBuilder: Sendable {
    var id: String
    var created: Int
    var model: String

    func chunk(_ choices: [ChunkChoice], usage: Usage? = nil) throws -> ProviderChunk {
        let chunk = ChatCompletionChunk(id: id, created: created, model: model, choices: choices, usage: usage)
        return ProviderChunk(json: try JSON.encode(chunk), chunk: chunk)
    }

    /// A chunk with one choice carrying `delta`.
    func chunk(index: Int = 0, _ delta: ChunkDelta, finishReason: String? = nil) throws -> ProviderChunk {
        try chunk([ChunkChoice(index: index, delta: delta, finishReason: finishReason)])
    }

    /// The final usage-only chunk, with `choices: []` as OpenAI sends it.
    func usageChunk(_ usage: Usage) throws -> ProviderChunk {
        try chunk([], usage: usage)
    }
}

enum WireSupport {
    /// The current time in whole seconds, for `created`.
    static func now() -> Int { Int(Date().timeIntervalSince1970) }

    /// A `ChatCompletion` built from its parts (the type is decode-only, so it goes
    /// through its own JSON form; non-streaming responses only, never per chunk).
    static func completion(id: String, created: Int, model: String, choices: [CompletionChoice], usage: Usage?) throws -> ChatCompletion {
        struct Body: Encodable {
            var id: String
            var object = "chat.completion"
            var created: Int
            var model: String
            var choices: [CompletionChoice]
            var usage: Usage?
        }
        let bytes = try JSON.encode(Body(id: id, created: created, model: model, choices: choices, usage: usage))
        return try JSON.decode(ChatCompletion.self, from: bytes)
    }

    /// A JSON value as compact text with sorted keys (tool-call arguments: stable output
    /// for equal input).
    static func jsonText(_ value: JSONValue) -> String {
        guard let data = try? JSON.sortedEncoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// An OpenAI tool call's `arguments` string as the JSON object providers want.
    static func arguments(_ text: String?, tool: String, message: Int) throws -> JSONValue {
        let text = (text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        if text.isEmpty { return .object([:]) }
        guard let value = try? JSON.decode(JSONValue.self, from: Array(text.utf8)), case .object = value else {
            throw SluiceError(
                .invalidRequest,
                "message \(message): the arguments of tool call \"\(tool)\" are not a JSON object; send them as OpenAI does, a JSON object in a string")
        }
        return value
    }

    /// A message's text: `content` as a string, or the text of its `text` parts.
    static func text(of content: JSONValue?) -> String {
        switch content {
        case .string(let s)?: return s
        case .array(let parts)?:
            return parts.compactMap { part in
                if let s = part.stringValue { return s }
                return part["type"]?.stringValue == nil || part["type"] == "text" ? part["text"]?.stringValue : nil
            }.joined()
        default: return ""
        }
    }

    /// `stop` as a list (OpenAI takes a string or an array of strings).
    static func stopSequences(_ value: JSONValue?) -> [JSONValue]? {
        switch value {
        case .string(let s)?: return s.isEmpty ? nil : [.string(s)]
        case .array(let a)?:
            let strings = a.filter { $0.stringValue != nil }
            return strings.isEmpty ? nil : strings
        default: return nil
        }
    }

    /// `max_completion_tokens`, else `max_tokens`.
    static func maxTokens(_ parameters: [String: JSONValue]) -> Int? {
        parameters["max_completion_tokens"]?.intValue ?? parameters["max_tokens"]?.intValue
    }

    /// An image part's `data:` URL split into its media type and base64 data.
    static func dataURL(_ url: String) -> (mediaType: String, data: String)? {
        guard url.hasPrefix("data:"), let comma = url.firstIndex(of: ",") else { return nil }
        let meta = url[url.index(url.startIndex, offsetBy: 5)..<comma]
        guard meta.hasSuffix(";base64") else { return nil }
        return (String(meta.dropLast(7)), String(url[url.index(after: comma)...]))
    }

    /// The OpenAI function tools of a request: `(name, description, parameters)`.
    static func functions(_ tools: JSONValue?) throws -> [(name: String, description: String?, parameters: JSONValue?)] {
        guard let tools else { return [] }
        guard let list = tools.arrayValue else {
            throw SluiceError(.invalidRequest, "\"tools\" must be an array of {\"type\": \"function\", \"function\": {...}}")
        }
        return try list.enumerated().compactMap { i, tool in
            if let type = tool["type"]?.stringValue, type != "function" { return nil }  // built-in tools do not translate
            guard let f = tool["function"], let name = f["name"]?.stringValue, !name.isEmpty else {
                throw SluiceError(.invalidRequest, "tools[\(i)] has no function name")
            }
            return (name, f["description"]?.stringValue, f["parameters"].flatMap { $0.isNull ? nil : $0 })
        }
    }

    /// `tool_choice` read into one of OpenAI's four choices.
    enum ToolChoice {
        case auto, none, required
        case function(String)
    }

    static func toolChoice(_ value: JSONValue?) -> ToolChoice? {
        switch value {
        case .string("auto")?: return .auto
        case .string("none")?: return ToolChoice.none
        case .string("required")?, .string("any")?: return .required
        case .object?:
            if let name = value?["function"]?["name"]?.stringValue { return .function(name) }
            return nil
        default: return nil
        }
    }
}

extension WireSupport {
    /// The message of a JSON error body in the usual places (`error.message`, `error`,
    /// `message`).
    static func genericErrorMessage(_ body: [UInt8]) -> String? {
        guard let v = try? JSON.decode(JSONValue.self, from: body) else { return nil }
        if let m = v["error"]?["message"]?.stringValue { return m }
        if let m = v["error"]?.stringValue { return m }
        if let m = v["message"]?.stringValue { return m }
        return nil
    }
}
