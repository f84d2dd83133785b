import Foundation

/// A provider and model to run a job against.
public struct ModelTarget: Sendable, Hashable, Codable {
    public var provider: String?
    public var model: String

    public init(provider: String?, model: String) {
        self.provider = provider
        self.model = model
    }
}

/// What the job asks for: one of the four request shapes (docs/contract.md, Jobs).
public enum JobRequest: Sendable, Hashable {
    /// OpenAI chat messages, tools included.
    case messages([JSONValue])
    /// LLMstudio's single user turn.
    case chatInput(String)
    /// A Portkey-style template from `prompts_dir`.
    case prompt(id: String, variables: [String: JSONValue])
    /// Smarter-style: sent to the provider as is.
    case passthrough(body: JSONValue)

    public var kind: String {
        switch self {
        case .messages: "messages"
        case .chatInput: "chat_input"
        case .prompt: "prompt"
        case .passthrough: "passthrough"
        }
    }
}

/// Which lane a job travels in: interactive work is taken and admitted to a provider
/// before batch work.
public enum JobPriority: String, Sendable, Hashable, Codable {
    case interactive, batch
}

/// A completion job as it arrives on `sluice.requests` or `sluice.requests.batch`
/// (docs/contract.md, Jobs).
public struct Job: Sendable {
    public var id: String
    public var provider: String?
    public var model: String?
    public var request: JobRequest
    /// Hyperparameters, from `parameters` and from OpenAI-style top-level fields.
    public var parameters: [String: JSONValue]
    public var stream: Bool
    public var sessionID: String?
    public var tenant: String
    public var metadata: JSONValue
    public var timeoutSeconds: Double?
    public var fallbacks: [ModelTarget]
    /// A per-job provider key; never logged, echoed or published.
    public var apiKey: Secret?
    /// The per-job key as the requests topic carries it (`JobKeyring`); the worker opens
    /// it into `apiKey`.
    public var sealedAPIKey: String?
    /// Set by the gateway: which submission this is, so that a cancel stops this job and
    /// not a later one that reuses its id.
    public var submissionID: String?
    /// nil: the lane of the topic it arrived on.
    public var priority: JobPriority?
    /// The latest time (seconds since the epoch) the job may start; past it, it ends
    /// `expired` without calling the provider.
    public var deadline: Double?
    /// The longest the job may wait, from when it was produced, before it starts.
    public var maxQueueSeconds: Double?

    public init(
        id: String, provider: String? = nil, model: String? = nil, request: JobRequest,
        parameters: [String: JSONValue] = [:], stream: Bool = true, sessionID: String? = nil,
        tenant: String = "default", metadata: JSONValue = .null, timeoutSeconds: Double? = nil,
        fallbacks: [ModelTarget] = [], apiKey: Secret? = nil, submissionID: String? = nil, sealedAPIKey: String? = nil,
        priority: JobPriority? = nil, deadline: Double? = nil, maxQueueSeconds: Double? = nil
    ) {
        self.priority = priority
        self.deadline = deadline
        self.maxQueueSeconds = maxQueueSeconds
        self.id = id
        self.provider = provider
        self.model = model
        self.request = request
        self.parameters = parameters
        self.stream = stream
        self.sessionID = sessionID
        self.tenant = tenant
        self.metadata = metadata
        self.timeoutSeconds = timeoutSeconds
        self.fallbacks = fallbacks
        self.apiKey = apiKey
        self.submissionID = submissionID
        self.sealedAPIKey = sealedAPIKey
    }
}

extension Job {
    /// OpenAI request fields that count as hyperparameters when given at the top level.
    public static let hyperparameterKeys: Set<String> = [
        "temperature", "max_tokens", "max_completion_tokens", "top_p", "n", "stop", "tools", "tool_choice",
        "parallel_tool_calls", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
        "top_logprobs", "seed", "response_format", "user", "top_k", "reasoning_effort", "modalities",
        "service_tier", "prediction", "audio", "store",
    ]

    /// Parses a job from a Kafka message value and checks every field (`validate`).
    /// Its id is the body's `id`, else `key` (the message key), else `fallbackID` (the
    /// worker passes `derivedID(topic:partition:offset:)`), else a new UUID.
    ///
    /// Throws `SluiceError(.invalidJob)` naming the field at fault in its message and in
    /// `context["field"]`. Once the id is known, `context["job_id"]` holds it: the
    /// worker answers such a job with a `failed` result, and sends a message whose id
    /// cannot be read to the DLQ.
    public static func parse(
        _ bytes: some Collection<UInt8>, key: String? = nil, fallbackID: String? = nil, limits: JobLimits = JobLimits()
    ) throws -> Job {
        let root: JSONValue
        do {
            root = try JSON.decode(JSONValue.self, from: bytes)
        } catch {
            throw SluiceError(.invalidJob, "the message is not valid JSON")
        }
        return try parse(root, key: key, fallbackID: fallbackID, limits: limits)
    }

    public static func parse(
        _ root: JSONValue, key: String? = nil, fallbackID: String? = nil, limits: JobLimits = JobLimits()
    ) throws -> Job {
        guard case .object(let o) = root else {
            throw SluiceError(.invalidJob, "the job must be a JSON object, got \(root.typeName)")
        }
        let id: String
        if let given = try Fields(o).string("id") {
            guard isValidID(given) else { throw invalid("id", "\"id\" must be \(idRule)") }
            id = given
        } else if let key, !key.isEmpty {
            guard isValidID(key) else { throw invalid("id", "the message key, the job's id when it has no \"id\", must be \(idRule)") }
            id = key
        } else {
            id = fallbackID ?? UUID().uuidString.lowercased()
        }
        do {
            let job = try fields(of: o, id: id)
            try job.validate(limits)
            return job
        } catch var error as SluiceError {
            if isValidID(id) { error.context["job_id"] = id }
            throw error
        }
    }

    /// The job's fields by type; `validate` then checks their ranges.
    private static func fields(of o: [String: JSONValue], id: String) throws -> Job {
        let fields = Fields(o)
        var request: JobRequest?
        func setRequest(_ r: JobRequest) throws {
            // The field that gives each shape (a template's is `prompt_id`).
            func field(_ r: JobRequest) -> String { r.kind == "prompt" ? "prompt_id" : r.kind }
            if let existing = request {
                throw invalid(
                    field(r),
                    "the job has both \"\(field(existing))\" and \"\(field(r))\"; give exactly one request shape")
            }
            request = r
        }
        if try fields.bool("passthrough") == true {
            guard let body = o["body"], case .object = body else {
                throw invalid("body", "a passthrough job needs \"body\", a JSON object sent to the provider as is")
            }
            request = .passthrough(body: body)
        } else {
            if let messages = o["messages"], !messages.isNull {
                guard case .array(let list) = messages else {
                    throw invalid("messages", "\"messages\" must be an array, got \(messages.typeName)")
                }
                try setRequest(.messages(list))
            }
            if let chatInput = try fields.string("chat_input") {
                try setRequest(.chatInput(chatInput))
            }
            if let promptID = try fields.string("prompt_id") {
                var variables: [String: JSONValue] = [:]
                if let v = o["variables"], !v.isNull {
                    guard case .object(let vo) = v else {
                        throw invalid("variables", "\"variables\" must be an object, got \(v.typeName)")
                    }
                    variables = vo
                }
                try setRequest(.prompt(id: promptID, variables: variables))
            }
        }
        guard let request else {
            throw SluiceError(
                .invalidJob,
                "the job has no request: give \"messages\", \"chat_input\", \"prompt_id\" with \"variables\", or \"passthrough\": true with \"body\"",
                context: ["field": "messages"])
        }

        var parameters: [String: JSONValue] = [:]
        for k in hyperparameterKeys { if let v = o[k], !v.isNull { parameters[k] = v } }
        if let p = o["parameters"], !p.isNull {
            guard case .object(let po) = p else {
                throw invalid("parameters", "\"parameters\" must be an object, got \(p.typeName)")
            }
            parameters.merge(po, uniquingKeysWith: { _, explicit in explicit })
        }

        let stream = try fields.bool("stream") ?? fields.bool("is_stream") ?? true

        var timeout: Double?
        if let t = o["timeout_s"], !t.isNull {
            guard let seconds = t.doubleValue else {
                throw invalid("timeout_s", "\"timeout_s\" must be a number of seconds, got \(t.typeName)")
            }
            timeout = seconds
        }

        var priority: JobPriority?
        if let p = try fields.string("priority") {
            guard let lane = JobPriority(rawValue: p) else {
                throw invalid("priority", "\"priority\" must be \"interactive\" or \"batch\", got \"\(p)\"")
            }
            priority = lane
        }

        var deadline: Double?
        if let d = o["deadline"], !d.isNull {
            switch d {
            case .number(let seconds) where seconds.isFinite && seconds > 0:
                deadline = seconds
            case .string(let text):
                guard let date = Job.parseTimestamp(text) else {
                    throw invalid("deadline", "\"deadline\" must be an RFC 3339 time (2026-01-31T12:00:00Z) or seconds since the epoch, got \"\(text)\"")
                }
                deadline = date
            default:
                throw invalid("deadline", "\"deadline\" must be an RFC 3339 time (2026-01-31T12:00:00Z) or seconds since the epoch")
            }
        }

        var maxQueue: Double?
        if let q = o["max_queue_s"], !q.isNull {
            guard let seconds = q.doubleValue, seconds.isFinite, seconds > 0 else {
                throw invalid("max_queue_s", "\"max_queue_s\" must be a positive number of seconds")
            }
            maxQueue = seconds
        }

        var fallbacks: [ModelTarget] = []
        if let f = o["fallbacks"], !f.isNull {
            guard case .array(let list) = f else {
                throw invalid("fallbacks", "\"fallbacks\" must be an array, got \(f.typeName)")
            }
            for (i, item) in list.enumerated() {
                guard case .object(let fo) = item, let model = fo["model"]?.stringValue else {
                    throw invalid("fallbacks", "fallbacks[\(i)] must be an object with a \"model\" string")
                }
                let provider = fo["provider"] ?? .null
                guard provider.isNull || provider.stringValue != nil else {
                    throw invalid("fallbacks", "fallbacks[\(i)].provider must be a string, got \(provider.typeName)")
                }
                fallbacks.append(ModelTarget(provider: provider.stringValue, model: model))
            }
        }

        return Job(
            id: id,
            provider: try fields.string("provider"),
            model: try fields.string("model"),
            request: request,
            parameters: parameters,
            stream: stream,
            sessionID: try fields.string("session_id"),
            tenant: try fields.string("tenant") ?? "default",
            metadata: o["metadata"] ?? .null,
            timeoutSeconds: timeout,
            fallbacks: fallbacks,
            // An empty key is no key (LLMstudio sends "" for "use the configured one").
            apiKey: try fields.string("api_key").flatMap { $0.isEmpty ? nil : Secret($0) },
            submissionID: try fields.string("submission_id"),
            sealedAPIKey: try fields.string("api_key_sealed"),
            priority: priority,
            deadline: deadline,
            maxQueueSeconds: maxQueue
        )
    }

    /// An RFC 3339 time, with or without fractional seconds, as seconds since the epoch.
    public static func parseTimestamp(_ text: String) -> Double? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d.timeIntervalSince1970 }
        return ISO8601DateFormatter().date(from: text)?.timeIntervalSince1970
    }

    /// The latest time (seconds since the epoch) the job may start: the earlier of its
    /// `deadline` and `max_queue_s` after it was produced; nil for none.
    public func startBy(producedAt: Double?) -> Double? {
        let queued = maxQueueSeconds.flatMap { q in producedAt.map { $0 + q } }
        switch (deadline, queued) {
        case let (d?, q?): return min(d, q)
        case let (d?, nil): return d
        case let (nil, q?): return q
        case (nil, nil): return nil
        }
    }

    /// The job as JSON for the request topic (the gateway and `sluice submit` produce this).
    /// `includeSecret` is for the producer only: the key must reach the worker.
    public func encoded(includeSecret: Bool = true) -> JSONValue {
        var o: [String: JSONValue] = ["id": .string(id), "stream": .bool(stream), "tenant": .string(tenant)]
        if let provider { o["provider"] = .string(provider) }
        if let model { o["model"] = .string(model) }
        switch request {
        case .messages(let m): o["messages"] = .array(m)
        case .chatInput(let s): o["chat_input"] = .string(s)
        case .prompt(let id, let variables):
            o["prompt_id"] = .string(id)
            o["variables"] = .object(variables)
        case .passthrough(let body):
            o["passthrough"] = .bool(true)
            o["body"] = body
        }
        if !parameters.isEmpty { o["parameters"] = .object(parameters) }
        if let sessionID { o["session_id"] = .string(sessionID) }
        if !metadata.isNull { o["metadata"] = metadata }
        if let timeoutSeconds { o["timeout_s"] = .number(timeoutSeconds) }
        if !fallbacks.isEmpty {
            o["fallbacks"] = .array(fallbacks.map { f in
                var fo: [String: JSONValue] = ["model": .string(f.model)]
                if let p = f.provider { fo["provider"] = .string(p) }
                return .object(fo)
            })
        }
        if let submissionID { o["submission_id"] = .string(submissionID) }
        if let sealedAPIKey { o["api_key_sealed"] = .string(sealedAPIKey) }
        if let priority { o["priority"] = .string(priority.rawValue) }
        if let deadline { o["deadline"] = .number(deadline) }
        if let maxQueueSeconds { o["max_queue_s"] = .number(maxQueueSeconds) }
        if includeSecret, let apiKey { o["api_key"] = .string(apiKey.value) }
        return .object(o)
    }
}

/// Typed access to a job's fields with errors that name the field.
private struct Fields {
    let o: [String: JSONValue]
    init(_ o: [String: JSONValue]) { self.o = o }

    func string(_ key: String) throws -> String? {
        guard let v = o[key], !v.isNull else { return nil }
        guard case .string(let s) = v else {
            throw Job.invalid(key, "\"\(key)\" must be a string, got \(v.typeName)")
        }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = o[key], !v.isNull else { return nil }
        switch v {
        case .bool(let b): return b
        // LLMstudio's `is_stream` is typed "any": accept the common spellings.
        case .string(let s) where ["true", "false"].contains(s.lowercased()): return s.lowercased() == "true"
        case .number(let n) where n == 0 || n == 1: return n == 1
        default: throw Job.invalid(key, "\"\(key)\" must be a boolean, got \(v.typeName)")
        }
    }
}
