/// The final unified response of a job (docs/contract.md, Results): a superset of LLMstudio's
/// response, itself a superset of OpenAI's `chat.completion`. Produced to
/// `sluice.results`, stored at `sluice:job:{id}:result`, and sent as the
/// `chat_completion_response` event.
///
/// Written by one serialiser, `json()` (JSONWriter.swift), on the per-job path; read back
/// with `Decodable`. It is deliberately not `Encodable`, so no second encoding can drift
/// from the first.
public struct UnifiedResponse: Sendable, Decodable {
    public enum Status: String, Sendable, Codable, CaseIterable {
        case succeeded, failed, cancelled
        case timedOut = "timed_out"
    }

    public struct ErrorInfo: Sendable, Hashable, Codable {
        public var type: String
        public var message: String
        public var providerStatus: Int?
        public var retryable: Bool

        public init(type: String, message: String, providerStatus: Int? = nil, retryable: Bool = false) {
            self.type = type
            self.message = message
            self.providerStatus = providerStatus
            self.retryable = retryable
        }

        enum CodingKeys: String, CodingKey {
            case type, message, retryable
            case providerStatus = "provider_status"
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(type, forKey: .type)
            try c.encode(message, forKey: .message)
            try c.encode(providerStatus, forKey: .providerStatus)
            try c.encode(retryable, forKey: .retryable)
        }
    }

    public var id: String
    public var object: String = "chat.completion"
    public var created: Int
    public var model: String
    public var choices: [CompletionChoice]
    public var usage: Usage?
    public var systemFingerprint: String?
    public var sessionID: String?
    public var chatInput: String?
    public var chatOutput: String?
    public var context: [JSONValue]
    public var provider: String
    public var timestamp: Double
    public var parameters: [String: JSONValue]
    public var metrics: JobMetrics
    public var jobID: String
    public var status: Status
    public var error: ErrorInfo?
    public var metadata: JSONValue
    public var raw: JSONValue?
    /// True when `context` and `chat_input` were left out because the input was larger
    /// than the worker echoes (`worker.echo_input_max_bytes`); absent otherwise.
    public var inputOmitted: Bool?

    public init(id: String, created: Int, model: String, choices: [CompletionChoice], usage: Usage?,
                systemFingerprint: String?, sessionID: String?, chatInput: String?, chatOutput: String?,
                context: [JSONValue], provider: String, timestamp: Double, parameters: [String: JSONValue],
                metrics: JobMetrics, jobID: String, status: Status, error: ErrorInfo?, metadata: JSONValue,
                raw: JSONValue? = nil) {
        self.id = id
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
        self.systemFingerprint = systemFingerprint
        self.sessionID = sessionID
        self.chatInput = chatInput
        self.chatOutput = chatOutput
        self.context = context
        self.provider = provider
        self.timestamp = timestamp
        self.parameters = parameters
        self.metrics = metrics
        self.jobID = jobID
        self.status = status
        self.error = error
        self.metadata = metadata
        self.raw = raw
    }

    enum CodingKeys: String, CodingKey {
        case id, object, created, model, choices, usage, context, provider, timestamp, parameters, metrics
        case status, error, metadata, raw
        case inputOmitted = "input_omitted"
        case systemFingerprint = "system_fingerprint"
        case sessionID = "session_id"
        case chatInput = "chat_input"
        case chatOutput = "chat_output"
        case jobID = "job_id"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        object = try c.decodeIfPresent(String.self, forKey: .object) ?? "chat.completion"
        created = try c.decode(Int.self, forKey: .created)
        model = try c.decode(String.self, forKey: .model)
        choices = try c.decode([CompletionChoice].self, forKey: .choices)
        usage = try c.decodeIfPresent(Usage.self, forKey: .usage)
        systemFingerprint = try c.decodeIfPresent(String.self, forKey: .systemFingerprint)
        sessionID = try c.decodeIfPresent(String.self, forKey: .sessionID)
        chatInput = try c.decodeIfPresent(String.self, forKey: .chatInput)
        chatOutput = try c.decodeIfPresent(String.self, forKey: .chatOutput)
        context = try c.decodeIfPresent([JSONValue].self, forKey: .context) ?? []
        provider = try c.decode(String.self, forKey: .provider)
        timestamp = try c.decode(Double.self, forKey: .timestamp)
        parameters = try c.decodeIfPresent([String: JSONValue].self, forKey: .parameters) ?? [:]
        metrics = try c.decode(JobMetrics.self, forKey: .metrics)
        jobID = try c.decode(String.self, forKey: .jobID)
        status = try c.decode(Status.self, forKey: .status)
        error = try c.decodeIfPresent(ErrorInfo.self, forKey: .error)
        metadata = try c.decodeIfPresent(JSONValue.self, forKey: .metadata) ?? .null
        raw = try c.decodeIfPresent(JSONValue.self, forKey: .raw)
        inputOmitted = try c.decodeIfPresent(Bool.self, forKey: .inputOmitted)
    }
}

// MARK: Size

extension UnifiedResponse {
    /// Leaves out the echoed input (`context` and `chat_input`) when it is larger than
    /// `maxBytes` of JSON, and says so with `input_omitted: true`. A long prompt then
    /// costs its size once, in the job's record, not again in every copy of the result.
    public mutating func omitInput(largerThan maxBytes: Int) {
        // The prompt is usually the bulk of both: count the cheap one first.
        var size = chatInput?.utf8.count ?? 0
        if size <= maxBytes {
            // As one `JSONValue`, so that Sluice's own writer measures it, not JSONEncoder.
            size += (try? JSON.encode(JSONValue.array(context)).count) ?? Int.max / 2
        }
        guard size > maxBytes else { return }
        context = []
        chatInput = nil
        inputOmitted = true
    }

    /// The most of `parameters` and `metadata` a cut-down result keeps, in bytes of JSON
    /// each; larger ones are left out.
    public static let cutDownFieldLimit = 16 * 1024

    /// What is produced in place of a result the broker refused for good: the same job,
    /// id, model, usage and metrics, `status: failed` with `error`, and none of the
    /// bulk (choices, output, input, raw reply; parameters and metadata only while
    /// small), so that it fits where the full result did not.
    public func cutDown(error: ErrorInfo) -> UnifiedResponse {
        func small(_ value: JSONValue) -> Bool {
            ((try? JSON.encode(value).count) ?? Int.max) <= UnifiedResponse.cutDownFieldLimit
        }
        var out = self
        out.status = .failed
        out.error = error
        out.choices = []
        out.chatOutput = nil
        out.raw = nil
        if !context.isEmpty || chatInput != nil { out.inputOmitted = true }
        out.context = []
        out.chatInput = nil
        if !small(.object(parameters)) { out.parameters = [:] }
        if !small(metadata) { out.metadata = .null }
        return out
    }

    /// The `error` of a cut-down result: for one too large (`result_too_large`) its
    /// size and the limit, for another refusal (`result_rejected`) the broker's reason;
    /// and where the full result is kept.
    public static func refusedError(
        tooLarge: Bool, reason: String, resultBytes: Int, limitBytes: Int, jobID: String, keptSeconds: Int
    ) -> ErrorInfo {
        let kept = "the full result is kept at \(RedisKeys.result(jobID)) (GET /v1/jobs/\(jobID)) for \(keptSeconds) s"
        guard tooLarge else {
            return ErrorInfo(type: "result_rejected", message: "the broker refused the result for good (\(reason)); \(kept)")
        }
        return ErrorInfo(type: "result_too_large", message: """
            the result is \(resultBytes) bytes, more than the results topic takes (kafka.max_message_bytes is \(limitBytes), \
            and the topic's max.message.bytes may be lower); \(kept)
            """)
    }
}

extension UnifiedResponse {
    /// A stream that says what this response says: for each choice one chunk with its
    /// role, content, refusal, tool calls and finish reason, then the usage chunk
    /// (`choices: []`) when there is usage. What a relay sends for a job whose chunk
    /// events it cannot replay: removed from the replay once the job finished, or never
    /// published (a batch-lane job nobody followed).
    public var standInChunks: [ChatCompletionChunk] {
        var chunks = choices.map { choice in
            let message = choice.message
            let calls = message.toolCalls?.enumerated().map { index, call in
                ToolCallDelta(index: index, id: call.id, type: call.type,
                              function: .init(name: call.function.name, arguments: call.function.arguments))
            }
            let delta = ChunkDelta(role: message.role, content: message.content, refusal: message.refusal, toolCalls: calls)
            return ChatCompletionChunk(id: id, created: created, model: model, systemFingerprint: systemFingerprint,
                                       choices: [ChunkChoice(index: choice.index, delta: delta, finishReason: choice.finishReason)])
        }
        if let usage {
            chunks.append(ChatCompletionChunk(id: id, created: created, model: model, systemFingerprint: systemFingerprint,
                                              choices: [], usage: usage))
        }
        return chunks
    }
}
