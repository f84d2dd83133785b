import Foundation
import Yams

/// Sluice's configuration (docs/contract.md, Configuration). Every key has a default, so the local stack
/// needs no file; environment variables override the file.
public struct SluiceConfig: Sendable, Codable {
    public struct Kafka: Sendable, Codable {
        public var brokers = "127.0.0.1:9092"
        public var requestsTopic = "sluice.requests"
        /// The batch lane: read by workers only with what interactive work leaves.
        public var batchRequestsTopic = "sluice.requests.batch"
        public var resultsTopic = "sluice.results"
        public var dlqTopic = "sluice.dlq"
        public var controlTopic = "sluice.control"
        public var groupID = "sluice-workers"
        /// The largest record Sluice writes or reads, in bytes: the producers'
        /// `message.max.bytes`, the consumers' fetch sizes and the `max.message.bytes` of
        /// the topics `sluice topics` creates. Room for the largest request the gateway
        /// accepts (`gateway.max_body_bytes`) plus the job's envelope.
        public var maxMessageBytes = 8 * 1024 * 1024
        /// Extra librdkafka properties, passed as they are (e.g. security settings).
        public var properties: [String: String] = [:]
        /// The environment variable holding the key that seals per-job `api_key`s in
        /// requests records (`JobKeyring`); the same on gateways, workers and `submit`.
        public var jobKeyEnv: String?
        /// The variable holding the key before a rotation, which workers still open.
        public var jobPreviousKeyEnv: String?
        /// A literal job key, for tests and local set-ups only.
        public var jobKey: String?

        enum CodingKeys: String, CodingKey {
            case brokers, properties
            case jobKeyEnv = "job_key_env"
            case jobPreviousKeyEnv = "job_previous_key_env"
            case jobKey = "job_key"
            case maxMessageBytes = "max_message_bytes"
            case requestsTopic = "requests_topic"
            case batchRequestsTopic = "batch_requests_topic"
            case resultsTopic = "results_topic"
            case dlqTopic = "dlq_topic"
            case controlTopic = "control_topic"
            case groupID = "group_id"
        }
        public init() {}
    }

    public struct Redis: Sendable, Codable {
        public var url = "redis://127.0.0.1:6379"
        public var eventTTLSeconds = 3600

        enum CodingKeys: String, CodingKey {
            case url
            case eventTTLSeconds = "event_ttl_s"
        }
        public init() {}
    }

    public struct APIKey: Sendable, Codable {
        /// The environment variable holding the key (keys are not written in the file).
        public var keyEnv: String?
        /// A literal key, for tests and local set-ups only.
        public var key: String?
        public var tenant: String = "default"
        /// The providers the tenant may use (by name); every configured one when absent.
        public var providers: [String]?
        /// The models the tenant may use, each an alias of `models` or `provider/model`;
        /// every model when absent.
        public var models: [String]?

        enum CodingKeys: String, CodingKey {
            case keyEnv = "key_env"
            case key, tenant, providers, models
        }
        public init(keyEnv: String? = nil, key: String? = nil, tenant: String = "default",
                    providers: [String]? = nil, models: [String]? = nil) {
            self.keyEnv = keyEnv
            self.key = key
            self.tenant = tenant
            self.providers = providers
            self.models = models
        }
    }

    public struct Gateway: Sendable, Codable {
        public var listen = "127.0.0.1:8080"
        public var apiKeys: [APIKey] = []
        /// The largest request body accepted, in bytes.
        public var maxBodyBytes = 4 * 1024 * 1024
        /// Whether a client that disconnects from a synchronous completion endpoint
        /// (OpenAI, LLMstudio, Portkey, passthrough) before its end cancels the job.
        public var cancelOnDisconnect = true
        /// Origins (`https://app.example.com`) whose pages may call the gateway from a
        /// browser; none by default.
        public var corsOrigins: [String] = []
        /// The environment variable holding the operators' key, which `/metrics` and the
        /// detailed `/readyz` need.
        public var adminKeyEnv: String?
        /// A literal admin key, for tests and local set-ups only.
        public var adminKey: String?
        /// `GET /v1/jobs/{id}/events` streams one tenant may hold open at once on one
        /// gateway process; more are answered 429.
        public var maxReadersPerTenant = 64
        /// Jobs one tenant may have in flight (submitted through any gateway and not yet
        /// finished); more are answered 429. 0: no cap.
        public var maxJobsPerTenant = 1000
        /// Events a reader may fall behind its job's live feed before it is cut (an
        /// event stream ends and resumes with `Last-Event-ID`).
        public var readerBufferEvents = 1024

        enum CodingKeys: String, CodingKey {
            case listen
            case apiKeys = "api_keys"
            case maxBodyBytes = "max_body_bytes"
            case cancelOnDisconnect = "cancel_on_disconnect"
            case corsOrigins = "cors_origins"
            case adminKeyEnv = "admin_key_env"
            case adminKey = "admin_key"
            case maxReadersPerTenant = "max_readers_per_tenant"
            case maxJobsPerTenant = "max_jobs_per_tenant"
            case readerBufferEvents = "reader_buffer_events"
        }
        public init() {}
    }

    public struct Worker: Sendable, Codable {
        public var maxInFlight = 1024
        /// Provider attempts per model target (first try plus retries).
        public var maxAttempts = 3
        /// How long SIGTERM lets in-flight jobs finish before cancelling them.
        public var drainSeconds = 30.0
        /// Default job timeout when a job gives no `timeout_s`.
        public var defaultTimeoutSeconds = 600.0
        /// A provider that sends no byte for this long fails the attempt.
        public var idleTimeoutSeconds = 120.0
        /// A provider that sends no content for this long after the request fails the
        /// attempt; nil for no limit.
        public var firstTokenTimeoutSeconds: Double?
        /// Jobs larger than this go to the DLQ unread. Defaults to
        /// `kafka.max_message_bytes` when the file does not set it.
        public var maxJobBytes = 8 * 1024 * 1024
        /// A result repeats its input (`context`, `chat_input`) only while that input is
        /// at most this many bytes of JSON; a larger one is left out and the result says
        /// `input_omitted: true`. The job's record holds the input in full.
        public var echoInputMaxBytes = 64 * 1024
        /// The most `fallbacks` a job may give; a job with more is invalid (a 400 at
        /// the gateway, a failed result at the worker).
        public var maxFallbacks = 5
        /// The longest a batch-lane job with no `deadline` or `max_queue_s` waits for a
        /// provider's rate limit (and its 429s) before it fails as `expired`. An
        /// interactive job waits at most its `timeout_s` (or `default_timeout_s`).
        public var maxRateLimitWaitSeconds = 86_400.0
        /// Whether a finished job's replay stream is compacted: its chunk events are
        /// removed and its lifecycle events (the final response among them) kept, with
        /// their ids, so that a finished job holds a few KB of Redis, not every chunk.
        public var compactFinishedReplay = true
        /// When a batch-lane job publishes its chunk events (lifecycle events and the
        /// result always go out).
        public var batchChunkEvents = BatchChunkEvents.followed

        enum CodingKeys: String, CodingKey {
            case maxInFlight = "max_in_flight"
            case maxAttempts = "max_attempts"
            case drainSeconds = "drain_s"
            case defaultTimeoutSeconds = "default_timeout_s"
            case idleTimeoutSeconds = "idle_timeout_s"
            case firstTokenTimeoutSeconds = "first_token_timeout_s"
            case maxJobBytes = "max_job_bytes"
            case echoInputMaxBytes = "echo_input_max_bytes"
            case maxFallbacks = "max_fallbacks"
            case maxRateLimitWaitSeconds = "max_rate_limit_wait_s"
            case compactFinishedReplay = "compact_finished_replay"
            case batchChunkEvents = "batch_chunk_events"
        }
        public init() {}
    }

    /// `worker.batch_chunk_events`: when a batch-lane job publishes its chunk events.
    public enum BatchChunkEvents: String, Sendable, Codable, CaseIterable {
        /// Only while someone follows the job (a reader of its events or of a
        /// streaming completion holds `sluice:job:{id}:followed`).
        case followed
        case always
        case never
    }

    public struct Provider: Sendable, Codable, Hashable {
        public enum Kind: String, Sendable, Codable, Hashable {
            case openai
            case openaiCompatible = "openai-compatible"
            case azure, anthropic, gemini, mock
        }
        public var name: String
        public var kind: Kind
        public var baseURL: String
        public var apiKeyEnv: String?
        public var apiVersion: String?
        /// Send `stream_options: {include_usage: true}` (some OpenAI-compatible servers
        /// reject it).
        public var streamOptions: Bool?
        /// Requests per minute all workers together send, per API key; nil for none
        /// (limits the provider announces in its headers are still followed).
        public var rpm: Int?
        /// Tokens (prompt and completion) per minute all workers together use, per API key.
        public var tpm: Int?
        /// A PEM file of CA certificates the worker trusts for this provider's https
        /// `base_url` instead of the system's (a private CA, a self-signed test server);
        /// the certificate is verified against it either way. nil: the system's bundle.
        public var caFile: String?

        enum CodingKeys: String, CodingKey {
            case name, kind, rpm, tpm
            case baseURL = "base_url"
            case apiKeyEnv = "api_key_env"
            case apiVersion = "api_version"
            case streamOptions = "stream_options"
            case caFile = "ca_file"
        }

        public init(name: String, kind: Kind, baseURL: String, apiKeyEnv: String? = nil,
                    apiVersion: String? = nil, streamOptions: Bool? = nil, rpm: Int? = nil, tpm: Int? = nil,
                    caFile: String? = nil) {
            self.rpm = rpm
            self.tpm = tpm
            self.caFile = caFile
            self.name = name
            self.kind = kind
            self.baseURL = baseURL
            self.apiKeyEnv = apiKeyEnv
            self.apiVersion = apiVersion
            self.streamOptions = streamOptions
        }
    }

    public struct Price: Sendable, Codable, Hashable {
        /// USD per 1M input tokens.
        public var input: Double
        /// USD per 1M output tokens.
        public var output: Double
        public init(input: Double, output: Double) {
            self.input = input
            self.output = output
        }
    }

    /// Spend limits per tenant, read by gateways (a 429 before a job is produced) and by
    /// workers (a job of a tenant over its limit fails `quota_exceeded` without calling
    /// the provider, whichever way it came).
    public struct Quotas: Sendable, Codable {
        /// USD every tenant may spend a UTC day (the cost of its finished jobs, from the
        /// price table); nil for no limit.
        public var maxSpendUSDPerDay: Double?
        /// Per-tenant overrides, by tenant name.
        public var tenants: [String: TenantQuota] = [:]

        enum CodingKeys: String, CodingKey {
            case maxSpendUSDPerDay = "max_spend_usd_per_day"
            case tenants
        }
        public init(maxSpendUSDPerDay: Double? = nil, tenants: [String: TenantQuota] = [:]) {
            self.maxSpendUSDPerDay = maxSpendUSDPerDay
            self.tenants = tenants
        }

        /// The daily spend limit of `tenant` in USD; nil for none.
        public func spendLimitUSD(for tenant: String) -> Double? {
            switch tenants[tenant]?.maxSpendUSDPerDay {
            case .some(.some(let limit)): return limit
            case .some(.none): return nil  // `null`: this tenant has no limit
            case .none: return maxSpendUSDPerDay
            }
        }
    }

    /// One tenant's quotas.
    public struct TenantQuota: Sendable, Codable {
        /// Absent: the default limit; `null`: no limit for this tenant; a number: its own.
        public var maxSpendUSDPerDay: Double??

        enum CodingKeys: String, CodingKey {
            case maxSpendUSDPerDay = "max_spend_usd_per_day"
        }
        public init(maxSpendUSDPerDay: Double?? = .none) {
            self.maxSpendUSDPerDay = maxSpendUSDPerDay
        }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            if c.contains(.maxSpendUSDPerDay) {
                maxSpendUSDPerDay = try c.decodeNil(forKey: .maxSpendUSDPerDay)
                    ? .some(nil) : .some(try c.decode(Double.self, forKey: .maxSpendUSDPerDay))
            }
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            switch maxSpendUSDPerDay {
            case .some(.some(let limit)): try c.encode(limit, forKey: .maxSpendUSDPerDay)
            case .some(.none): try c.encodeNil(forKey: .maxSpendUSDPerDay)
            case .none: break
            }
        }
    }

    public var kafka = Kafka()
    public var redis = Redis()
    public var gateway = Gateway()
    public var worker = Worker()
    public var quotas = Quotas()
    public var providers: [Provider] = SluiceConfig.defaultProviders
    public var models: [String: ModelTarget] = ["default": ModelTarget(provider: "openai", model: "gpt-4o-mini")]
    public var pricing: [String: Price] = [:]
    public var promptsDir = "prompts"
    public var tracing = Tracing()

    enum CodingKeys: String, CodingKey {
        case kafka, redis, gateway, worker, quotas, providers, models, pricing, tracing
        case promptsDir = "prompts_dir"
    }

    public init() {}

    /// The real providers only: the mock is added by `sluice dev`, or configured by hand.
    public static let defaultProviders: [Provider] = [
        Provider(name: "openai", kind: .openai, baseURL: "https://api.openai.com/v1", apiKeyEnv: "OPENAI_API_KEY"),
        Provider(name: "anthropic", kind: .anthropic, baseURL: "https://api.anthropic.com", apiKeyEnv: "ANTHROPIC_API_KEY"),
        Provider(name: "gemini", kind: .gemini, baseURL: "https://generativelanguage.googleapis.com", apiKeyEnv: "GEMINI_API_KEY"),
    ]
}

// Every key optional in the file: decode over the defaults.
extension SluiceConfig {
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kafka = try c.decodeIfPresent(Kafka.self, forKey: .kafka) ?? kafka
        redis = try c.decodeIfPresent(Redis.self, forKey: .redis) ?? redis
        gateway = try c.decodeIfPresent(Gateway.self, forKey: .gateway) ?? gateway
        worker = try c.decodeIfPresent(Worker.self, forKey: .worker) ?? worker
        quotas = try c.decodeIfPresent(Quotas.self, forKey: .quotas) ?? quotas
        // A worker takes any job the queue holds unless told otherwise.
        let workerKeys = try? c.nestedContainer(keyedBy: Worker.CodingKeys.self, forKey: .worker)
        if workerKeys?.contains(.maxJobBytes) != true { worker.maxJobBytes = kafka.maxMessageBytes }
        providers = try c.decodeIfPresent([Provider].self, forKey: .providers) ?? providers
        models = try c.decodeIfPresent([String: ModelTarget].self, forKey: .models) ?? models
        pricing = try c.decodeIfPresent([String: Price].self, forKey: .pricing) ?? pricing
        promptsDir = try c.decodeIfPresent(String.self, forKey: .promptsDir) ?? promptsDir
        tracing = try c.decodeIfPresent(Tracing.self, forKey: .tracing) ?? tracing
    }
}

extension SluiceConfig.Kafka {
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        brokers = try c.decodeIfPresent(String.self, forKey: .brokers) ?? brokers
        requestsTopic = try c.decodeIfPresent(String.self, forKey: .requestsTopic) ?? requestsTopic
        batchRequestsTopic = try c.decodeIfPresent(String.self, forKey: .batchRequestsTopic) ?? batchRequestsTopic
        resultsTopic = try c.decodeIfPresent(String.self, forKey: .resultsTopic) ?? resultsTopic
        dlqTopic = try c.decodeIfPresent(String.self, forKey: .dlqTopic) ?? dlqTopic
        controlTopic = try c.decodeIfPresent(String.self, forKey: .controlTopic) ?? controlTopic
        groupID = try c.decodeIfPresent(String.self, forKey: .groupID) ?? groupID
        maxMessageBytes = try c.decodeIfPresent(Int.self, forKey: .maxMessageBytes) ?? maxMessageBytes
        properties = try c.decodeIfPresent([String: String].self, forKey: .properties) ?? properties
        jobKeyEnv = try c.decodeIfPresent(String.self, forKey: .jobKeyEnv)
        jobPreviousKeyEnv = try c.decodeIfPresent(String.self, forKey: .jobPreviousKeyEnv)
        jobKey = try c.decodeIfPresent(String.self, forKey: .jobKey)
    }
}

extension SluiceConfig.Redis {
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        url = try c.decodeIfPresent(String.self, forKey: .url) ?? url
        eventTTLSeconds = try c.decodeIfPresent(Int.self, forKey: .eventTTLSeconds) ?? eventTTLSeconds
    }
}

extension SluiceConfig.Gateway {
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? listen
        apiKeys = try c.decodeIfPresent([SluiceConfig.APIKey].self, forKey: .apiKeys) ?? apiKeys
        maxBodyBytes = try c.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? maxBodyBytes
        cancelOnDisconnect = try c.decodeIfPresent(Bool.self, forKey: .cancelOnDisconnect) ?? cancelOnDisconnect
        corsOrigins = try c.decodeIfPresent([String].self, forKey: .corsOrigins) ?? corsOrigins
        adminKeyEnv = try c.decodeIfPresent(String.self, forKey: .adminKeyEnv)
        adminKey = try c.decodeIfPresent(String.self, forKey: .adminKey)
        maxReadersPerTenant = try c.decodeIfPresent(Int.self, forKey: .maxReadersPerTenant) ?? maxReadersPerTenant
        maxJobsPerTenant = try c.decodeIfPresent(Int.self, forKey: .maxJobsPerTenant) ?? maxJobsPerTenant
        readerBufferEvents = try c.decodeIfPresent(Int.self, forKey: .readerBufferEvents) ?? readerBufferEvents
    }
}

extension SluiceConfig.Quotas {
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxSpendUSDPerDay = try c.decodeIfPresent(Double.self, forKey: .maxSpendUSDPerDay)
        tenants = try c.decodeIfPresent([String: SluiceConfig.TenantQuota].self, forKey: .tenants) ?? tenants
    }
}

extension SluiceConfig.Worker {
    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxInFlight = try c.decodeIfPresent(Int.self, forKey: .maxInFlight) ?? maxInFlight
        maxAttempts = try c.decodeIfPresent(Int.self, forKey: .maxAttempts) ?? maxAttempts
        drainSeconds = try c.decodeIfPresent(Double.self, forKey: .drainSeconds) ?? drainSeconds
        defaultTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .defaultTimeoutSeconds) ?? defaultTimeoutSeconds
        idleTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .idleTimeoutSeconds) ?? idleTimeoutSeconds
        firstTokenTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .firstTokenTimeoutSeconds)
        maxJobBytes = try c.decodeIfPresent(Int.self, forKey: .maxJobBytes) ?? maxJobBytes
        echoInputMaxBytes = try c.decodeIfPresent(Int.self, forKey: .echoInputMaxBytes) ?? echoInputMaxBytes
        maxFallbacks = try c.decodeIfPresent(Int.self, forKey: .maxFallbacks) ?? maxFallbacks
        maxRateLimitWaitSeconds = try c.decodeIfPresent(Double.self, forKey: .maxRateLimitWaitSeconds) ?? maxRateLimitWaitSeconds
        compactFinishedReplay = try c.decodeIfPresent(Bool.self, forKey: .compactFinishedReplay) ?? compactFinishedReplay
        if let mode = try c.decodeIfPresent(String.self, forKey: .batchChunkEvents) {
            guard let known = SluiceConfig.BatchChunkEvents(rawValue: mode) else {
                throw DecodingError.dataCorruptedError(forKey: .batchChunkEvents, in: c, debugDescription:
                    "\"\(mode)\" is not a mode: give one of \(SluiceConfig.BatchChunkEvents.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            batchChunkEvents = known
        }
    }
}

extension SluiceConfig {
    /// Parses YAML text (an empty text gives the defaults), then applies the environment.
    public static func parse(yaml: String, environment: [String: String] = [:]) throws -> SluiceConfig {
        var config: SluiceConfig
        if yaml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            config = SluiceConfig()
        } else {
            do {
                config = try YAMLDecoder().decode(SluiceConfig.self, from: yaml)
            } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
                throw SluiceError(.config, "config key \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
            } catch let DecodingError.keyNotFound(key, context) {
                let path = (context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
                throw SluiceError(.config, "config key \(path) is required")
            } catch let DecodingError.dataCorrupted(context) {
                throw SluiceError(.config, "config key \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
            } catch {
                throw SluiceError(.config, "the config file is not valid YAML: \(error)")
            }
        }
        config.applyEnvironment(environment)
        try config.validate()
        return config
    }

    public mutating func applyEnvironment(_ env: [String: String]) {
        if let v = env["SLUICE_KAFKA_BROKERS"], !v.isEmpty { kafka.brokers = v }
        if let v = env["SLUICE_REDIS_URL"], !v.isEmpty { redis.url = v }
        if let v = env["SLUICE_HTTP_ADDR"], !v.isEmpty { gateway.listen = v }
        if let v = env["SLUICE_GROUP_ID"], !v.isEmpty { kafka.groupID = v }
    }

    public func validate() throws {
        var seen = Set<String>()
        for p in providers {
            guard seen.insert(p.name).inserted else {
                throw SluiceError(.config, "provider \"\(p.name)\" is configured twice")
            }
            if let rpm = p.rpm, rpm < 1 {
                throw SluiceError(.config, "providers.\(p.name).rpm must be at least 1 (leave it out for no limit)")
            }
            if let tpm = p.tpm, tpm < 1 {
                throw SluiceError(.config, "providers.\(p.name).tpm must be at least 1 (leave it out for no limit)")
            }
            if let caFile = p.caFile, caFile.isEmpty || caFile.utf8.contains(0) {
                throw SluiceError(.config, "providers.\(p.name).ca_file must be the path of a PEM file of CA certificates (leave it out for the system's)")
            }
        }
        for (alias, target) in models {
            if let p = target.provider, !seen.contains(p) {
                throw SluiceError(.config, "model alias \"\(alias)\" names provider \"\(p)\", which is not configured")
            }
        }
        var policies: [String: APIKey] = [:]
        for k in gateway.apiKeys {
            for p in k.providers ?? [] where !seen.contains(p) {
                throw SluiceError(.config, "gateway.api_keys: tenant \"\(k.tenant)\" may use provider \"\(p)\", which is not configured")
            }
            if let other = policies[k.tenant], other.providers != k.providers || other.models != k.models {
                throw SluiceError(.config, "gateway.api_keys: the keys of tenant \"\(k.tenant)\" give different providers or models; give every key of a tenant the same lists")
            }
            policies[k.tenant] = k
        }
        for origin in gateway.corsOrigins where origin == "*" || !(origin.hasPrefix("https://") || origin.hasPrefix("http://")) || origin.hasSuffix("/") {
            throw SluiceError(.config, "gateway.cors_origins: \"\(origin)\" is not an origin; give scheme://host[:port], e.g. https://app.example.com (no \"*\", no path)")
        }
        guard worker.maxInFlight > 0 else { throw SluiceError(.config, "worker.max_in_flight must be at least 1") }
        guard kafka.batchRequestsTopic != kafka.requestsTopic else {
            throw SluiceError(.config, "kafka.batch_requests_topic must differ from kafka.requests_topic (the lanes are separate topics)")
        }
        guard worker.maxAttempts > 0 else { throw SluiceError(.config, "worker.max_attempts must be at least 1") }
        guard worker.maxFallbacks >= 0 else { throw SluiceError(.config, "worker.max_fallbacks must be 0 or more") }
        guard worker.maxJobBytes > 0 else { throw SluiceError(.config, "worker.max_job_bytes must be at least 1") }
        guard gateway.maxBodyBytes > 0 else { throw SluiceError(.config, "gateway.max_body_bytes must be at least 1") }
        guard redis.eventTTLSeconds > 0 else { throw SluiceError(.config, "redis.event_ttl_s must be at least 1") }
        guard worker.defaultTimeoutSeconds > 0, worker.defaultTimeoutSeconds <= JobLimits.maxTimeoutSeconds else {
            throw SluiceError(.config, "worker.default_timeout_s must be greater than 0 and at most \(Int(JobLimits.maxTimeoutSeconds)) seconds")
        }
        for (key, seconds) in [("worker.drain_s", worker.drainSeconds), ("worker.idle_timeout_s", worker.idleTimeoutSeconds),
                               ("worker.first_token_timeout_s", worker.firstTokenTimeoutSeconds ?? 1)] {
            guard seconds >= 0, seconds.isFinite else { throw SluiceError(.config, "\(key) must be a finite number of seconds, 0 or more") }
        }
        // A request the gateway accepts must fit in a record, with room for the job's
        // other fields.
        let envelope = SluiceConfig.Kafka.envelopeBytes
        guard kafka.maxMessageBytes >= gateway.maxBodyBytes + envelope else {
            throw SluiceError(.config, """
                kafka.max_message_bytes (\(kafka.maxMessageBytes)) is too small for gateway.max_body_bytes \
                (\(gateway.maxBodyBytes)): raise it to at least \(gateway.maxBodyBytes + envelope), or lower max_body_bytes
                """)
        }
        guard kafka.maxMessageBytes <= SluiceConfig.Kafka.maxMessageBytesLimit else {
            throw SluiceError(.config, "kafka.max_message_bytes (\(kafka.maxMessageBytes)) is above librdkafka's limit of \(SluiceConfig.Kafka.maxMessageBytesLimit)")
        }
        guard worker.echoInputMaxBytes >= 0 else { throw SluiceError(.config, "worker.echo_input_max_bytes must be 0 or more") }
        guard gateway.maxReadersPerTenant > 0 else { throw SluiceError(.config, "gateway.max_readers_per_tenant must be at least 1") }
        guard (16...1_000_000).contains(gateway.readerBufferEvents) else {
            throw SluiceError(.config, "gateway.reader_buffer_events must be 16 to 1000000")
        }
        var limits: [(key: String, usd: Double?)] = [("quotas.max_spend_usd_per_day", quotas.maxSpendUSDPerDay)]
        for (tenant, quota) in quotas.tenants.sorted(by: { $0.key < $1.key }) {
            limits.append(("quotas.tenants.\(tenant).max_spend_usd_per_day", quota.maxSpendUSDPerDay ?? nil))
        }
        for case let (key, limit?) in limits where !(limit.isFinite && limit >= 0 && limit <= SluiceConfig.Quotas.maxSpendUSD) {
            throw SluiceError(.config, "\(key) must be a number of USD from 0 to \(Int(SluiceConfig.Quotas.maxSpendUSD)) (leave it out for no limit)")
        }
        for name in quotas.tenants.keys where name.isEmpty || name.utf8.count > 256 || name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw SluiceError(.config, "quotas.tenants: \"\(name.prefix(40))\" is not a tenant name (1 to 256 bytes, no control characters)")
        }
        try tracing.validate()
    }

    /// The topic of a lane.
    public func requestsTopic(for priority: JobPriority?) -> String {
        priority == .batch ? kafka.batchRequestsTopic : kafka.requestsTopic
    }

    public func provider(named name: String) -> Provider? {
        providers.first { $0.name == name }
    }

    /// The provider and model a job runs against: an explicit `provider`, a
    /// `provider/model` name, or a `models` alias.
    public func resolve(provider: String?, model: String?) throws -> (Provider, String) {
        if let provider {
            guard let p = self.provider(named: provider) else {
                throw SluiceError(.unknownProvider, "unknown provider \"\(provider)\"; configured: \(providers.map(\.name).joined(separator: ", "))")
            }
            if let model, let alias = models[model], alias.provider == nil || alias.provider == provider {
                return (p, alias.model)
            }
            guard let model, !model.isEmpty else {
                throw SluiceError(.unknownModel, "the job names provider \"\(provider)\" but no \"model\"")
            }
            return (p, model)
        }
        guard let model, !model.isEmpty else {
            throw SluiceError(.unknownModel, "the job has neither \"provider\" nor \"model\"")
        }
        if let alias = models[model] {
            guard let pname = alias.provider, let p = self.provider(named: pname) else {
                throw SluiceError(.unknownProvider, "model alias \"\(model)\" has no configured provider")
            }
            return (p, alias.model)
        }
        if let slash = model.firstIndex(of: "/") {
            let pname = String(model[..<slash])
            if let p = self.provider(named: pname) { return (p, String(model[model.index(after: slash)...])) }
        }
        throw SluiceError(
            .unknownModel,
            "cannot tell which provider serves model \"\(model)\": give \"provider\", write it as \"provider/model\", or add an alias under \"models\"")
    }
}

extension SluiceConfig.Quotas {
    /// The largest daily limit taken: its micro-USD fit a Redis counter many times over.
    public static let maxSpendUSD = 1_000_000_000.0
}

extension SluiceConfig {
    /// The tenants this configuration names (`gateway.api_keys`, `quotas.tenants`, and
    /// `default`): the values the per-tenant metrics label with; any other tenant a
    /// Kafka job names is counted as `_other`.
    public var namedTenants: Set<String> {
        Set(gateway.apiKeys.map(\.tenant)).union(quotas.tenants.keys).union(["default"])
    }
}

extension SluiceConfig.Kafka {
    /// Room kept in a record for a job's fields besides the request body.
    public static let envelopeBytes = 64 * 1024
    /// The largest `message.max.bytes` librdkafka takes.
    public static let maxMessageBytesLimit = 1_000_000_000

    /// A producer's librdkafka properties: `message.max.bytes` from `max_message_bytes`,
    /// then `properties` (which win).
    public var producerProperties: [String: String] {
        ["message.max.bytes": String(maxMessageBytes)].merging(properties) { $1 }
    }

    /// A consumer's librdkafka properties: fetch sizes that take a `max_message_bytes`
    /// record whole, then `properties` (which win).
    public var consumerProperties: [String: String] {
        // librdkafka's defaults where they are larger (50 MB per fetch, 100 MB per
        // response); its rule that a response may be 512 bytes over a fetch.
        let fetch = max(maxMessageBytes, 52_428_800)
        return [
            "fetch.max.bytes": String(fetch),
            "max.partition.fetch.bytes": String(maxMessageBytes),
            "receive.message.max.bytes": String(max(100_000_000, fetch + 512)),
        ].merging(properties) { $1 }
    }

    /// The topic settings `sluice topics` creates Sluice's topics with.
    public var topicConfig: [String: String] {
        ["max.message.bytes": String(maxMessageBytes)]
    }
}
