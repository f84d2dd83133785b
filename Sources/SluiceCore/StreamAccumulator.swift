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
    }

    private struct ToolCallState: Sendable {
        var id = ""
        var type = "function"
        var name = ""
        var arguments = ""
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
        for choice in chunk.choices {
            var state = choices[choice.index] ?? ChoiceState()
            if let delta = choice.delta {
                if let role = delta.role { state.role = role }
                if let text = delta.content {
                    state.content += text
                    state.hasContent = true
                }
                if let r = delta.refusal { state.refusal = (state.refusal ?? "") + r }
                for (position, call) in (delta.toolCalls ?? []).enumerated() {
                    let key = call.index ?? position
                    var tool = state.toolCalls[key] ?? ToolCallState()
                    if let id = call.id { tool.id = id }
                    if let type = call.type { tool.type = type }
                    if let name = call.function?.name { tool.name += name }
                    if let args = call.function?.arguments { tool.arguments += args }
                    state.toolCalls[key] = tool
                }
            }
            if let reason = choice.finishReason { state.finishReason = reason }
            choices[choice.index] = state
        }
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
