import Foundation

/// One deterministic completion, whatever the wire format it is rendered in.
///
/// - Text: words drawn from a fixed vocabulary by a generator seeded with the FNV-1a hash
///   of the last user message, so equal requests get equal text, streamed or not, and the
///   words do not depend on the chunk count. Content chunk 0 is a capitalized word, every
///   later one a space and a word; the last one ends with a period.
/// - A tool call instead, when the request offers tools and its last message is the
///   user's and mentions "weather" (``MockRequest/wantsToolCall``): a call to the first
///   tool, with arguments made from its schema (each property in name order: the first
///   `enum` value, a word for a string, 1 to 100 for a number, `true`, `[]`, a nested
///   object), split into as many fragments as there would be content chunks.
/// - `completion_tokens`: the number of content pieces (one token per piece), capped by
///   the request's max tokens for text (then the finish reason is `length`).
/// - `prompt_tokens`: for each message, 4 + ⌈UTF-8 bytes of its text / 4⌉.
/// - ids: derived from the hash of the whole request body.
struct MockCompletion: Sendable {
    enum Finish: Sendable { case stop, length, toolCalls }

    struct ToolCall: Sendable {
        var name: String
        /// The whole arguments object, as JSON text.
        var arguments: String
    }

    /// The request body's hash in hex: the root of every id.
    let hash: String
    let model: String
    let created: Int
    /// The text's pieces, or the tool call's argument fragments.
    let pieces: [String]
    let toolCall: ToolCall?
    let promptTokens: Int
    let finish: Finish
    /// OpenAI's `stream_options.include_usage`.
    let includeUsage: Bool

    var completionTokens: Int { self.pieces.count }
    var text: String { self.toolCall == nil ? self.pieces.joined() : "" }

    init(request: MockRequest, body: some Sequence<UInt8>, behavior: MockBehavior, created: Int) {
        self.hash = String(fnv1a(body), radix: 16)
        self.model = request.model ?? "mock"
        self.created = created
        self.includeUsage = request.includeUsage
        self.promptTokens = request.messages.reduce(0) { $0 + 4 + ($1.text.utf8.count + 3) / 4 }

        let seed = fnv1a(request.lastUserText.utf8)
        if request.wantsToolCall, let tool = request.tools.first {
            var random = SplitMix64(seed: seed &+ 1)
            let arguments = Self.arguments(tool.parameters, &random)
            self.toolCall = ToolCall(name: tool.name, arguments: arguments)
            self.pieces = Self.split(arguments, into: behavior.chunks)
            self.finish = .toolCalls
            return
        }
        self.toolCall = nil
        var random = SplitMix64(seed: seed)
        var count = behavior.chunks
        if let limit = request.maxTokens, limit < count {
            count = max(limit, 0)
            self.finish = .length
        } else {
            self.finish = .stop
        }
        self.pieces = (0..<count).map { index in
            var piece = index == 0 ? Self.capitalizedWord(&random) : " " + Self.word(&random)
            if index == count - 1 { piece += "." }
            return piece
        }
    }

    private static func word(_ random: inout SplitMix64) -> String {
        vocabulary[Int(random.next() % UInt64(vocabulary.count))]
    }

    private static func capitalizedWord(_ random: inout SplitMix64) -> String {
        let word = self.word(&random)
        return word.prefix(1).uppercased() + word.dropFirst()
    }

    /// Arguments for a tool with this JSON Schema (see the type's documentation).
    static func arguments(_ schema: MockJSON?, _ random: inout SplitMix64) -> String {
        guard let properties = schema?["properties"]?.object, !properties.isEmpty else { return "{}" }
        let fields = properties.keys.sorted().map { name in
            jsonString(name) + ":" + self.value(properties[name]!, &random)
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    private static func value(_ schema: MockJSON, _ random: inout SplitMix64) -> String {
        if let first = schema["enum"]?.array?.first { return first.text }
        let type = schema["type"]?.string ?? schema["type"]?.array?.first?.string ?? "string"
        switch type.lowercased() {
        case "integer", "number": return String(random.next() % 100 + 1)
        case "boolean": return "true"
        case "array": return "[]"
        case "object": return self.arguments(schema, &random)
        case "null": return "null"
        default: return jsonString(self.capitalizedWord(&random))
        }
    }

    /// `text` cut into `count` pieces of about equal length (at least one, at most one per
    /// character), wherever the cuts fall.
    static func split(_ text: String, into count: Int) -> [String] {
        let characters = Array(text)
        let n = max(1, min(count, characters.count))
        return (0..<n).map { i in
            String(characters[(i * characters.count / n)..<((i + 1) * characters.count / n)])
        }
    }
}

/// `value` as a JSON string literal.
func jsonString(_ value: String) -> String {
    var out = "\""
    out.reserveCapacity(value.utf8.count + 2)
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20:
            out += "\\u00" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
        default: out.unicodeScalars.append(scalar)
        }
    }
    out += "\""
    return out
}

/// 64-bit FNV-1a: a stable hash (Swift's `Hasher` is seeded per process).
func fnv1a(_ bytes: some Sequence<UInt8>) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }
    return hash
}

/// A small, fast, seedable generator (Steele, Lea, Flood 2014).
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { self.state = seed }

    mutating func next() -> UInt64 {
        self.state &+= 0x9e37_79b9_7f4a_7c15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

private let vocabulary: [String] = [
    "river", "signal", "quiet", "lantern", "harbor", "copper", "meadow", "orbit",
    "velvet", "summit", "ember", "compass", "willow", "static", "granite", "echo",
    "canvas", "thunder", "pebble", "horizon", "cipher", "marble", "falcon", "drift",
    "saffron", "beacon", "tundra", "ripple", "lattice", "cobalt", "prairie", "quartz",
    "stream", "token", "kernel", "packet", "buffer", "socket", "vector", "tensor",
    "atlas", "breeze", "cinder", "delta", "fjord", "glacier", "ion", "jasper",
]
