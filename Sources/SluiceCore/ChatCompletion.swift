/// OpenAI's chat completion wire types: the normalised shape every provider is mapped to.

public struct Usage: Sendable, Hashable, Codable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int
    public var promptTokensDetails: JSONValue?
    public var completionTokensDetails: JSONValue?

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil,
                promptTokensDetails: JSONValue? = nil, completionTokensDetails: JSONValue? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens ?? promptTokens.adding(saturating: completionTokens)
        self.promptTokensDetails = promptTokensDetails
        self.completionTokensDetails = completionTokensDetails
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
        case promptTokensDetails = "prompt_tokens_details"
        case completionTokensDetails = "completion_tokens_details"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try c.decodeIfPresent(Int.self, forKey: .promptTokens) ?? 0
        completionTokens = try c.decodeIfPresent(Int.self, forKey: .completionTokens) ?? 0
        totalTokens = try c.decodeIfPresent(Int.self, forKey: .totalTokens) ?? promptTokens.adding(saturating: completionTokens)
        promptTokensDetails = try c.decodeIfPresent(JSONValue.self, forKey: .promptTokensDetails)
        completionTokensDetails = try c.decodeIfPresent(JSONValue.self, forKey: .completionTokensDetails)
    }
}

public struct ToolCallDelta: Sendable, Hashable, Codable {
    public struct Function: Sendable, Hashable, Codable {
        public var name: String?
        public var arguments: String?
        public init(name: String? = nil, arguments: String? = nil) {
            self.name = name
            self.arguments = arguments
        }
    }
    public var index: Int?
    public var id: String?
    public var type: String?
    public var function: Function?

    public init(index: Int?, id: String? = nil, type: String? = nil, function: Function? = nil) {
        self.index = index
        self.id = id
        self.type = type
        self.function = function
    }
}

public struct ChunkDelta: Sendable, Hashable, Codable {
    public var role: String?
    public var content: String?
    public var refusal: String?
    public var toolCalls: [ToolCallDelta]?

    public init(role: String? = nil, content: String? = nil, refusal: String? = nil, toolCalls: [ToolCallDelta]? = nil) {
        self.role = role
        self.content = content
        self.refusal = refusal
        self.toolCalls = toolCalls
    }

    enum CodingKeys: String, CodingKey {
        case role, content, refusal
        case toolCalls = "tool_calls"
    }
}

public struct ChunkChoice: Sendable, Hashable, Codable {
    public var index: Int
    public var delta: ChunkDelta?
    public var finishReason: String?

    public init(index: Int, delta: ChunkDelta?, finishReason: String? = nil) {
        self.index = index
        self.delta = delta
        self.finishReason = finishReason
    }

    enum CodingKeys: String, CodingKey {
        case index, delta
        case finishReason = "finish_reason"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decodeIfPresent(Int.self, forKey: .index) ?? 0
        delta = try c.decodeIfPresent(ChunkDelta.self, forKey: .delta)
        finishReason = try c.decodeIfPresent(String.self, forKey: .finishReason)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(delta ?? ChunkDelta(), forKey: .delta)
        try c.encode(finishReason, forKey: .finishReason)
    }
}

/// One `chat.completion.chunk`. Lenient on input (Azure's content-filter chunks have
/// empty `choices` and no `model`), exact on output.
public struct ChatCompletionChunk: Sendable, Hashable, Codable {
    public var id: String
    public var object: String
    public var created: Int
    public var model: String
    public var systemFingerprint: String?
    public var choices: [ChunkChoice]
    public var usage: Usage?

    public init(id: String, created: Int, model: String, systemFingerprint: String? = nil,
                choices: [ChunkChoice], usage: Usage? = nil) {
        self.id = id
        self.object = "chat.completion.chunk"
        self.created = created
        self.model = model
        self.systemFingerprint = systemFingerprint
        self.choices = choices
        self.usage = usage
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage
        case systemFingerprint = "system_fingerprint"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? ""
        object = try c.decodeIfPresent(String.self, forKey: .object) ?? "chat.completion.chunk"
        created = try c.decodeIfPresent(Int.self, forKey: .created) ?? 0
        model = try c.decodeIfPresent(String.self, forKey: .model) ?? ""
        systemFingerprint = try c.decodeIfPresent(String.self, forKey: .systemFingerprint)
        choices = try c.decodeIfPresent([ChunkChoice].self, forKey: .choices) ?? []
        usage = try c.decodeIfPresent(Usage.self, forKey: .usage)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(systemFingerprint, forKey: .systemFingerprint)
        try c.encode(choices, forKey: .choices)
        try c.encodeIfPresent(usage, forKey: .usage)
    }

    /// Whether this chunk carries output the user sees (text, refusal or a tool call):
    /// what time to first token and inter-token latency are measured on.
    public var carriesContent: Bool {
        choices.contains { choice in
            guard let d = choice.delta else { return false }
            return !(d.content ?? "").isEmpty || !(d.refusal ?? "").isEmpty || !(d.toolCalls ?? []).isEmpty
        }
    }
}

/// A tool call in a complete message.
public struct ToolCall: Sendable, Hashable, Codable {
    public struct Function: Sendable, Hashable, Codable {
        public var name: String
        public var arguments: String
        public init(name: String, arguments: String) {
            self.name = name
            self.arguments = arguments
        }
    }
    public var id: String
    public var type: String
    public var function: Function

    public init(id: String, type: String = "function", function: Function) {
        self.id = id
        self.type = type
        self.function = function
    }
}

public struct AssistantMessage: Sendable, Hashable, Codable {
    public var role: String
    public var content: String?
    public var refusal: String?
    public var toolCalls: [ToolCall]?

    public init(role: String = "assistant", content: String?, refusal: String? = nil, toolCalls: [ToolCall]? = nil) {
        self.role = role
        self.content = content
        self.refusal = refusal
        self.toolCalls = toolCalls
    }

    enum CodingKeys: String, CodingKey {
        case role, content, refusal
        case functionCall = "function_call"
        case toolCalls = "tool_calls"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        role = try c.decodeIfPresent(String.self, forKey: .role) ?? "assistant"
        content = try c.decodeIfPresent(String.self, forKey: .content)
        refusal = try c.decodeIfPresent(String.self, forKey: .refusal)
        toolCalls = try c.decodeIfPresent([ToolCall].self, forKey: .toolCalls)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(content, forKey: .content)
        try c.encode(role, forKey: .role)
        try c.encode(JSONValue.null, forKey: .functionCall)
        try c.encode(toolCalls, forKey: .toolCalls)
        try c.encodeIfPresent(refusal, forKey: .refusal)
    }
}

public struct CompletionChoice: Sendable, Hashable, Codable {
    public var index: Int
    public var message: AssistantMessage
    public var finishReason: String?
    public var logprobs: JSONValue?

    public init(index: Int, message: AssistantMessage, finishReason: String?, logprobs: JSONValue? = nil) {
        self.index = index
        self.message = message
        self.finishReason = finishReason
        self.logprobs = logprobs
    }

    enum CodingKeys: String, CodingKey {
        case index, message, logprobs
        case finishReason = "finish_reason"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(finishReason, forKey: .finishReason)
        try c.encode(index, forKey: .index)
        try c.encode(logprobs ?? .null, forKey: .logprobs)
        try c.encode(message, forKey: .message)
    }
}

/// A non-streaming `chat.completion` as providers return it.
public struct ChatCompletion: Sendable, Hashable, Decodable {
    public var id: String
    public var created: Int
    public var model: String
    public var systemFingerprint: String?
    public var choices: [CompletionChoice]
    public var usage: Usage?

    enum CodingKeys: String, CodingKey {
        case id, created, model, choices, usage
        case systemFingerprint = "system_fingerprint"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? ""
        created = try c.decodeIfPresent(Int.self, forKey: .created) ?? 0
        model = try c.decodeIfPresent(String.self, forKey: .model) ?? ""
        systemFingerprint = try c.decodeIfPresent(String.self, forKey: .systemFingerprint)
        choices = try c.decodeIfPresent([CompletionChoice].self, forKey: .choices) ?? []
        usage = try c.decodeIfPresent(Usage.self, forKey: .usage)
    }
}
