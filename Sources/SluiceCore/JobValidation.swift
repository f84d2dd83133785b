/// The type and range of every field of a job, in one place: the gateway answers 400
/// when a request breaks one, the worker a `failed` result with error `invalid_job`.
/// Each error's message names the field, and its `context["field"]` holds the name.
public struct JobLimits: Sendable, Hashable {
    /// At most this many `fallbacks` (`worker.max_fallbacks`).
    public var maxFallbacks: Int

    public init(maxFallbacks: Int = 5) {
        self.maxFallbacks = maxFallbacks
    }

    public init(_ config: SluiceConfig) {
        self.init(maxFallbacks: config.worker.maxFallbacks)
    }

    /// The longest `timeout_s`: a day.
    public static let maxTimeoutSeconds = 86_400.0
    /// How deep JSON may nest, counting the job object as the first level.
    public static let maxDepth = 64
    /// At most this many `messages`.
    public static let maxMessages = 4_096
    /// At most this many bytes in a name: `provider`, `model`, `tenant`, `session_id`,
    /// `prompt_id`, a fallback's `provider` and `model`, a message's `role`.
    public static let maxNameBytes = 256
    /// At most this many bytes of `metadata`, as compact JSON.
    public static let maxMetadataBytes = 64 * 1024
    /// At most this many `variables`.
    public static let maxVariables = 1_024
    /// At most this many bytes in `api_key`.
    public static let maxAPIKeyBytes = 4_096

    /// What a known hyperparameter must be. Others may be any JSON within `maxDepth`:
    /// the provider checks them.
    enum Rule {
        case number(ClosedRange<Double>, String)
        case integer(ClosedRange<Double>, String)
        case bool
        case string(maxBytes: Int)
        case strings(maxCount: Int)
        case stringOrStrings(maxCount: Int)
        case object
        case objects(maxCount: Int)
        case stringOrObject
        case logitBias
    }

    static let int32 = Double(Int32.min)...Double(Int32.max)
    static let positiveInt32 = 1...Double(Int32.max)

    static let parameterRules: [String: Rule] = [
        "temperature": .number(0...2, "from 0 to 2"),
        "top_p": .number(0...1, "from 0 to 1"),
        "presence_penalty": .number(-2...2, "from -2 to 2"),
        "frequency_penalty": .number(-2...2, "from -2 to 2"),
        "max_tokens": .integer(positiveInt32, "from 1 to 2147483647"),
        "max_completion_tokens": .integer(positiveInt32, "from 1 to 2147483647"),
        "n": .integer(1...128, "from 1 to 128"),
        "candidate_count": .integer(1...128, "from 1 to 128"),
        "top_logprobs": .integer(0...20, "from 0 to 20"),
        "seed": .integer(int32, "from -2147483648 to 2147483647"),
        "top_k": .integer(0...Double(Int32.max), "from 0 to 2147483647"),
        "logprobs": .bool,
        "parallel_tool_calls": .bool,
        "store": .bool,
        "stop": .stringOrStrings(maxCount: 16),
        "tools": .objects(maxCount: 128),
        "tool_choice": .stringOrObject,
        "response_format": .object,
        "stream_options": .object,
        "prediction": .object,
        "audio": .object,
        "user": .string(maxBytes: 256),
        "reasoning_effort": .string(maxBytes: 64),
        "service_tier": .string(maxBytes: 64),
        "modalities": .strings(maxCount: 8),
        "logit_bias": .logitBias,
    ]
}

extension Job {
    /// Whether `id` can name a job: 1 to 128 characters, letters, digits, `.`, `_`, `:`
    /// and `-`, starting with a letter or digit. Such an id is safe in a URL path, a
    /// Redis key, a Kafka key and a log line as it is.
    public static func isValidID(_ id: String) -> Bool {
        let bytes = id.utf8
        guard (1...128).contains(bytes.count), let first = bytes.first, isAlphanumeric(first) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "-") }
    }

    /// What `isValidID` says of ids, for error messages.
    public static let idRule = "1 to 128 characters: letters, digits, '.', '_', ':' and '-', starting with a letter or digit"

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
    }

    /// The id of a job that has neither an `id` nor a message key: its place in the log,
    /// `topic:partition:offset`, so a redelivery is the same job. A topic name that
    /// would make it no valid id is replaced by its hash.
    public static func derivedID(topic: String, partition: Int32, offset: Int64) -> String {
        let place = ":\(partition):\(offset)"
        if isValidID(topic + place) { return topic + place }
        return "topic-" + String(stableHash(topic), radix: 16) + place
    }

    /// FNV-1a of `text`: the same in every process, for ids derived from text.
    public static func stableHash(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 { hash = (hash ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return hash
    }

    /// Throws `SluiceError(.invalidJob)` naming the first field whose type or range is
    /// wrong (see `JobLimits`).
    public func validate(_ limits: JobLimits = JobLimits()) throws {
        guard Job.isValidID(id) else {
            throw Job.invalid("id", "\"id\" must be \(Job.idRule)")
        }
        try Job.checkName(provider, "provider")
        try Job.checkName(model, "model")
        try Job.checkName(tenant, "tenant")
        try Job.checkName(sessionID, "session_id")

        // Nested values sit below the job object; parameters below `parameters` too.
        let belowRoot = JobLimits.maxDepth - 1
        switch request {
        case .messages(let messages):
            guard !messages.isEmpty else { throw Job.invalid("messages", "\"messages\" is empty") }
            guard messages.count <= JobLimits.maxMessages else {
                throw Job.invalid("messages", "\"messages\" has \(messages.count) messages; at most \(JobLimits.maxMessages) are accepted")
            }
            for (i, m) in messages.enumerated() {
                guard case .object(let mo) = m else { throw Job.invalid("messages", "messages[\(i)] must be an object") }
                guard let role = mo["role"]?.stringValue else { throw Job.invalid("messages", "messages[\(i)] has no \"role\"") }
                try Job.checkName(role, "messages", label: "messages[\(i)].role")
                try Job.checkMessageFields(mo, index: i)
            }
            try Job.checkDepth(.array(messages), "messages", levels: belowRoot)
        case .chatInput:
            break
        case .prompt(let id, let variables):
            try Job.checkName(id, "prompt_id")
            guard variables.count <= JobLimits.maxVariables else {
                throw Job.invalid("variables", "\"variables\" has \(variables.count) entries; at most \(JobLimits.maxVariables) are accepted")
            }
            try Job.checkDepth(.object(variables), "variables", levels: belowRoot)
        case .passthrough(let body):
            guard case .object = body else {
                throw Job.invalid("body", "a passthrough job needs \"body\", a JSON object sent to the provider as is")
            }
            try Job.checkDepth(body, "body", levels: belowRoot)
        }

        for (key, value) in parameters.sorted(by: { $0.key < $1.key }) {
            try Job.checkParameter(key, value)
            try Job.checkDepth(value, key, levels: belowRoot - 1)
        }

        if !metadata.isNull {
            try Job.checkDepth(metadata, "metadata", levels: belowRoot)
            var bytes: [UInt8] = []
            try? metadata.write(to: &bytes)
            guard bytes.count <= JobLimits.maxMetadataBytes else {
                throw Job.invalid("metadata", "\"metadata\" is \(bytes.count) bytes of JSON; at most \(JobLimits.maxMetadataBytes) are accepted")
            }
        }

        if let t = timeoutSeconds {
            guard t > 0, t <= JobLimits.maxTimeoutSeconds else {
                throw Job.invalid("timeout_s", "\"timeout_s\" must be a number of seconds greater than 0 and at most 86400, got \(t)")
            }
        }

        guard fallbacks.count <= limits.maxFallbacks else {
            throw Job.invalid(
                "fallbacks",
                "\"fallbacks\" has \(fallbacks.count) entries; at most \(limits.maxFallbacks) are accepted (worker.max_fallbacks)")
        }
        for (i, f) in fallbacks.enumerated() {
            try Job.checkName(f.provider, "fallbacks", label: "fallbacks[\(i)].provider")
            try Job.checkName(f.model, "fallbacks", label: "fallbacks[\(i)].model")
        }

        if let apiKey {
            let bytes = apiKey.value.utf8
            // Never echo the key: the message names the field only.
            guard (1...JobLimits.maxAPIKeyBytes).contains(bytes.count), bytes.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                throw Job.invalid(
                    "api_key",
                    "\"api_key\" must be 1 to \(JobLimits.maxAPIKeyBytes) printable ASCII characters without spaces (it is sent as a header)")
            }
        }
    }

    /// The OpenAI fields of a message that Sluice reads or converts for other providers
    /// have their types (a result repeats the messages, as its API description says);
    /// other fields pass to the provider as they are.
    static func checkMessageFields(_ message: [String: JSONValue], index i: Int) throws {
        func wrong(_ key: String, _ kind: String, _ value: JSONValue) -> SluiceError {
            invalid("messages", "messages[\(i)].\(key) must be \(kind), got \(value.typeName)")
        }
        for (key, value) in message.sorted(by: { $0.key < $1.key }) where !value.isNull {
            switch key {
            case "content":
                switch value {
                case .string, .array: break
                default: throw wrong(key, "a string, an array of content parts or null", value)
                }
            case "name", "tool_call_id":
                guard case .string = value else { throw wrong(key, "a string", value) }
            case "tool_calls":
                guard case .array(let calls) = value, calls.allSatisfy({ $0.objectValue != nil }) else {
                    throw wrong(key, "an array of objects", value)
                }
            default:
                continue
            }
        }
    }

    static func invalid(_ field: String, _ message: String) -> SluiceError {
        SluiceError(.invalidJob, message, context: ["field": field])
    }

    /// A short name: at most `JobLimits.maxNameBytes` bytes, no control characters.
    static func checkName(_ value: String?, _ field: String, label: String? = nil) throws {
        guard let value else { return }
        let label = label ?? "\"\(field)\""
        guard value.utf8.count <= JobLimits.maxNameBytes else {
            throw invalid(field, "\(label) is \(value.utf8.count) bytes; at most \(JobLimits.maxNameBytes) are accepted")
        }
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw invalid(field, "\(label) must not contain control characters")
        }
    }

    /// Throws when `value` nests more than `levels` arrays and objects.
    static func checkDepth(_ value: JSONValue, _ field: String, levels: Int) throws {
        func fits(_ v: JSONValue, _ levels: Int) -> Bool {
            switch v {
            case .array(let a): return levels > 0 && a.allSatisfy { fits($0, levels - 1) }
            case .object(let o): return levels > 0 && o.values.allSatisfy { fits($0, levels - 1) }
            default: return true
            }
        }
        guard fits(value, levels) else {
            throw invalid(field, "\"\(field)\" nests too deeply: a job's JSON may nest at most \(JobLimits.maxDepth) levels")
        }
    }

    static func checkParameter(_ key: String, _ value: JSONValue) throws {
        guard let rule = JobLimits.parameterRules[key] else { return }
        let name = "\"\(key)\""
        switch rule {
        case .number(let range, let text), .integer(let range, let text):
            var wantsInteger = false
            if case .integer = rule { wantsInteger = true }
            let kind = wantsInteger ? "an integer" : "a number"
            guard case .number(let n) = value else {
                throw invalid(key, "\(name) must be \(kind) \(text), got \(value.typeName)")
            }
            guard range.contains(n), !wantsInteger || n.rounded(.towardZero) == n else {
                throw invalid(key, "\(name) must be \(kind) \(text), got \(n)")
            }
        case .bool:
            guard case .bool = value else { throw invalid(key, "\(name) must be a boolean, got \(value.typeName)") }
        case .string(let maxBytes):
            guard case .string(let s) = value else { throw invalid(key, "\(name) must be a string, got \(value.typeName)") }
            guard s.utf8.count <= maxBytes else { throw invalid(key, "\(name) is \(s.utf8.count) bytes; at most \(maxBytes) are accepted") }
        case .strings(let maxCount):
            guard case .array(let a) = value, a.allSatisfy({ $0.stringValue != nil }) else {
                throw invalid(key, "\(name) must be an array of strings, got \(value.typeName)")
            }
            guard a.count <= maxCount else { throw invalid(key, "\(name) has \(a.count) entries; at most \(maxCount) are accepted") }
        case .stringOrStrings(let maxCount):
            if case .string = value { return }
            guard case .array(let a) = value, a.allSatisfy({ $0.stringValue != nil }) else {
                throw invalid(key, "\(name) must be a string or an array of strings, got \(value.typeName)")
            }
            guard a.count <= maxCount else { throw invalid(key, "\(name) has \(a.count) entries; at most \(maxCount) are accepted") }
        case .object:
            guard case .object = value else { throw invalid(key, "\(name) must be an object, got \(value.typeName)") }
        case .objects(let maxCount):
            guard case .array(let a) = value, a.allSatisfy({ $0.objectValue != nil }) else {
                throw invalid(key, "\(name) must be an array of objects, got \(value.typeName)")
            }
            guard a.count <= maxCount else { throw invalid(key, "\(name) has \(a.count) entries; at most \(maxCount) are accepted") }
        case .stringOrObject:
            switch value {
            case .string, .object: return
            default: throw invalid(key, "\(name) must be a string or an object, got \(value.typeName)")
            }
        case .logitBias:
            guard case .object(let o) = value else { throw invalid(key, "\(name) must be an object, got \(value.typeName)") }
            guard o.count <= 1_024 else { throw invalid(key, "\(name) has \(o.count) entries; at most 1024 are accepted") }
            for v in o.values {
                guard case .number(let n) = v, (-100...100).contains(n) else {
                    throw invalid(key, "\(name) values must be numbers from -100 to 100")
                }
            }
        }
    }
}
