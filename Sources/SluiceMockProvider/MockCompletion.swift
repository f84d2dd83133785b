import Foundation

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

    var model: String?
    var messages: [Message]
    var stream: Bool?
    var streamOptions: StreamOptions?
    var maxTokens: Int?
    var maxCompletionTokens: Int?

    enum CodingKeys: String, CodingKey {
        case model, messages, stream
        case streamOptions = "stream_options"
        case maxTokens = "max_tokens"
        case maxCompletionTokens = "max_completion_tokens"
    }
}

/// One deterministic completion, rendered in OpenAI's wire format.
///
/// - Text: words drawn from a fixed vocabulary by a generator seeded with the FNV-1a hash
///   of the last user message, so equal requests get equal text, streamed or not, and the
///   words do not depend on the chunk count. Content chunk 0 is a capitalized word, every
///   later one a space and a word; the last one ends with a period.
/// - `completion_tokens`: the number of content chunks (one token per chunk), capped by
///   `max_tokens`/`max_completion_tokens` (then `finish_reason` is `length`).
/// - `prompt_tokens`: for each message, 4 + ⌈UTF-8 bytes of its text / 4⌉.
/// - `id`: derived from the hash of the whole request body.
struct MockCompletion {
    let id: String
    let model: String
    let created: Int
    let pieces: [String]
    let promptTokens: Int
    let finishReason: String
    let includeUsage: Bool

    var completionTokens: Int { self.pieces.count }
    var text: String { self.pieces.joined() }

    init(request: ChatRequest, body: some Sequence<UInt8>, behavior: MockBehavior, created: Int) {
        self.id = "chatcmpl-mock-" + String(fnv1a(body), radix: 16)
        self.model = request.model ?? "mock"
        self.created = created
        self.includeUsage = request.streamOptions?.includeUsage ?? false
        self.promptTokens = request.messages.reduce(0) { $0 + 4 + ($1.text.utf8.count + 3) / 4 }

        let lastUser = request.messages.last { $0.role == "user" } ?? request.messages.last
        var random = SplitMix64(seed: fnv1a(lastUser?.text.utf8 ?? "".utf8))
        var count = behavior.chunks
        self.finishReason = {
            if let limit = request.maxCompletionTokens ?? request.maxTokens, limit < count {
                count = max(limit, 0)
                return "length"
            }
            return "stop"
        }()
        self.pieces = (0..<count).map { index in
            let word = vocabulary[Int(random.next() % UInt64(vocabulary.count))]
            var piece = index == 0 ? word.prefix(1).uppercased() + word.dropFirst() : " " + word
            if index == count - 1 { piece += "." }
            return piece
        }
    }

    // MARK: Rendering

    private var header: String {
        "\"id\":\"\(self.id)\",\"created\":\(self.created),\"model\":\(jsonString(self.model)),\"system_fingerprint\":\"fp_mock\""
    }

    private var usage: String {
        "{\"prompt_tokens\":\(self.promptTokens),\"completion_tokens\":\(self.completionTokens),\"total_tokens\":\(self.promptTokens + self.completionTokens)}"
    }

    /// The `chat.completion` object of a non-streaming response.
    func completionJSON(finished: Bool) -> String {
        let finish = finished ? "\"\(self.finishReason)\"" : "null"
        return "{\"object\":\"chat.completion\",\(self.header),\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\(jsonString(self.text)),\"refusal\":null},\"logprobs\":null,\"finish_reason\":\(finish)}],\"usage\":\(self.usage)}"
    }

    /// One SSE event carrying a `chat.completion.chunk` with a single choice.
    private func chunkEvent(delta: String, finishReason: String? = nil) -> String {
        let finish = finishReason.map { "\"\($0)\"" } ?? "null"
        // With include_usage, OpenAI sends `"usage": null` on every chunk but the last.
        let usage = self.includeUsage ? ",\"usage\":null" : ""
        return "data: {\"object\":\"chat.completion.chunk\",\(self.header),\"choices\":[{\"index\":0,\"delta\":\(delta),\"logprobs\":null,\"finish_reason\":\(finish)}]\(usage)}\n\n"
    }

    var roleEvent: String { self.chunkEvent(delta: "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}") }

    func contentEvent(_ index: Int) -> String {
        self.chunkEvent(delta: "{\"content\":\(jsonString(self.pieces[index]))}")
    }

    /// Content chunk `index` cut off in the middle of its JSON.
    func malformedEvent(_ index: Int) -> String {
        "data: {\"object\":\"chat.completion.chunk\",\(self.header),\"choices\":[{\"index\":0,\"delta\":{\"content\":\(jsonString(self.pieces[index]))\n\n"
    }

    var finishEvent: String { self.chunkEvent(delta: "{}", finishReason: self.finishReason) }

    var usageEvent: String {
        "data: {\"object\":\"chat.completion.chunk\",\(self.header),\"choices\":[],\"usage\":\(self.usage)}\n\n"
    }

    static let doneEvent = "data: [DONE]\n\n"
}

/// An OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.
func openAIError(message: String, type: String, code: String?) -> String {
    "{\"error\":{\"message\":\(jsonString(message)),\"type\":\(jsonString(type)),\"param\":null,\"code\":\(code.map(jsonString) ?? "null")}}"
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
