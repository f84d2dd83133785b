/// Folds a stream of `chat.completion.chunk`s into the final completion: text and tool
/// calls per choice, finish reasons, and the provider's usage.
///
/// Usage is assigned, never added: providers that repeat it (OpenAI's usage-only final
/// chunk, Anthropic's cumulative `message_delta`, Gemini's `usageMetadata` on every
/// chunk) report a running total, so the last one wins.
public struct StreamAccumulator: Sendable {
    private struct ChoiceState: Sendable {
        var role = "assistant"
        var content = ""
        var hasContent = false
        var refusal: String?
        var toolCalls: [Int: ToolCallState] = [:]
        var finishReason: String?

        mutating func add(_ choice: ChunkChoice) {
            if let delta = choice.delta {
                if let role = delta.role { self.role = role }
                if let text = delta.content {
                    content += text
                    hasContent = true
                }
                if let r = delta.refusal { refusal = (refusal ?? "") + r }
                for (position, call) in (delta.toolCalls ?? []).enumerated() {
                    toolCalls[call.index ?? position, default: ToolCallState()].add(call)
                }
            }
            if let reason = choice.finishReason { finishReason = reason }
        }
    }

    private struct ToolCallState: Sendable {
        var id = ""
        var type = "function"
        var name = ""
        var arguments = ""

        mutating func add(_ call: ToolCallDelta) {
            if let id = call.id { self.id = id }
            if let type = call.type { self.type = type }
            if let name = call.function?.name { self.name += name }
            if let args = call.function?.arguments { arguments += args }
        }
    }

    private var choices: [Int: ChoiceState] = [:]
    public private(set) var usage: Usage?
    public private(set) var id: String?
    public private(set) var model: String?
    public private(set) var created: Int?
    public private(set) var systemFingerprint: String?
    /// Number of chunks that carried content.
    public private(set) var contentChunks = 0

    public init() {}

    public mutating func add(_ chunk: ChatCompletionChunk) {
        if id == nil, !chunk.id.isEmpty { id = chunk.id }
        if model == nil, !chunk.model.isEmpty { model = chunk.model }
        if created == nil, chunk.created != 0 { created = chunk.created }
        if let fp = chunk.systemFingerprint { systemFingerprint = fp }
        if let u = chunk.usage { usage = u }
        if chunk.carriesContent { contentChunks += 1 }
        // In place through the dictionary: a copy taken out and stored back shares its
        // strings with the entry, so appending to it would copy the whole text so far.
        for choice in chunk.choices { choices[choice.index, default: ChoiceState()].add(choice) }
    }

    /// Whether every choice seen so far has a finish reason.
    public var allChoicesFinished: Bool {
        !choices.isEmpty && choices.values.allSatisfy { $0.finishReason != nil }
    }

    /// The complete choices, in index order.
    public var completionChoices: [CompletionChoice] {
        choices.keys.sorted().map { index in
            let s = choices[index]!
            let tools = s.toolCalls.keys.sorted().map { k in
                let t = s.toolCalls[k]!
                return ToolCall(id: t.id, type: t.type, function: .init(name: t.name, arguments: t.arguments))
            }
            return CompletionChoice(
                index: index,
                message: AssistantMessage(
                    role: s.role,
                    content: s.hasContent || tools.isEmpty ? s.content : nil,
                    refusal: s.refusal,
                    toolCalls: tools.isEmpty ? nil : tools),
                finishReason: s.finishReason)
        }
    }

    /// The text of choice 0: the response's `chat_output`.
    public var output: String { choices[0]?.content ?? choices.values.first?.content ?? "" }
}
