import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceGateway
import SluiceHTTPClient
import SluiceKafka
import SluiceMockProvider
import SluiceRedis
import SluiceTelemetry
import SluiceWorker
import Synchronization
import Testing
import SluiceSupport

/// The broker and Redis that `make test` starts (scripts/with-services.sh).
enum TestServices {
    /// Whether the broker and Redis of `make test` are there (scripts/with-services.sh
    /// exports their addresses). `make unit-test` runs without them and skips the
    /// suites marked `.needsServices`.
    static var available: Bool {
        ProcessInfo.processInfo.environment["SLUICE_TEST_KAFKA_BROKERS"] != nil
    }

    static func brokers() throws -> String {
        try #require(ProcessInfo.processInfo.environment["SLUICE_TEST_KAFKA_BROKERS"],
                     "SLUICE_TEST_KAFKA_BROKERS is not set: run the integration tests with `make test`")
    }

    static func redisURL() throws -> String {
        try #require(ProcessInfo.processInfo.environment["SLUICE_TEST_REDIS_URL"],
                     "SLUICE_TEST_REDIS_URL is not set: run the integration tests with `make test`")
    }

    static var logger: Logger {
        var l = Logger(label: "test")
        l.logLevel = ProcessInfo.processInfo.environment["SLUICE_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
        return l
    }
}

/// A whole Sluice for one test: its own topics and consumer group on the shared broker,
/// the mock provider on a free port, a worker, optionally the gateway, and a reader of
/// the results topic. Everything is stopped when the body returns or throws.
struct TestStack: Sendable {
    /// The gateway's admin key in every stack, which `metric(_:)` sends.
    static let adminKey = "k-test-admin"
    static let admin: HTTPHeaders = ["authorization": "Bearer \(adminKey)"]
    /// The job key that seals per-job api_keys in every stack (32 bytes, base64).
    static let jobKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    let config: SluiceConfig
    let producer: KafkaProducer
    let redis: RedisConnection
    let results: TopicCollector
    let mock: MockProviderServer.Running
    /// `http://127.0.0.1:PORT` when started with the gateway.
    let gatewayURL: String?
    let http: HTTPClient

    static func with(
        maxInFlight: Int = 64, mock defaults: MockBehavior = MockBehavior(), rateLimit: MockRateLimit? = nil,
        gateway: Bool = false, worker: Bool = true,
        logger: Logger = TestServices.logger, tracers: (gateway: SluiceTracer, worker: SluiceTracer) = (.off, .off),
        configure: (inout SluiceConfig) -> Void = { _ in },
        _ body: (TestStack) async throws -> Void
    ) async throws {
        let prefix = "t\(UUID().uuidString.prefix(8).lowercased())"
        var config = SluiceConfig()
        config.kafka.brokers = try TestServices.brokers()
        config.kafka.requestsTopic = "\(prefix).requests"
        config.kafka.batchRequestsTopic = "\(prefix).requests.batch"
        config.kafka.resultsTopic = "\(prefix).results"
        config.kafka.dlqTopic = "\(prefix).dlq"
        config.kafka.controlTopic = "\(prefix).control"
        config.kafka.groupID = "\(prefix)-workers"
        config.redis.url = try TestServices.redisURL()
        config.redis.eventTTLSeconds = 600
        config.worker.maxInFlight = maxInFlight
        config.worker.drainSeconds = 5
        // Most tests read a finished job's chunks back from its replay stream, which
        // compaction (on by default) empties of them as the job ends: they run with it
        // off, and the tests about compaction (ReplayCompactionTests) turn it on.
        config.worker.compactFinishedReplay = false
        config.gateway.listen = "127.0.0.1:0"
        config.gateway.adminKey = TestStack.adminKey
        config.kafka.jobKey = TestStack.jobKey

        try await MockProviderServer.withRunning(defaults: defaults, rateLimit: rateLimit, logger: logger) { mock in
            config.providers = [.init(name: "mock", kind: .mock, baseURL: mock.baseURL)]
            config.models = ["default": ModelTarget(provider: "mock", model: "mock-1")]
            configure(&config)
            let frozen = config
            // As `sluice topics` makes them: sized by kafka.max_message_bytes.
            let kafka = frozen.kafka
            try KafkaAdmin.createTopics(brokers: kafka.brokers, topics: [
                (kafka.requestsTopic, 3), (kafka.batchRequestsTopic, 3), (kafka.resultsTopic, 3), (kafka.dlqTopic, 1),
                (kafka.controlTopic, 1),
            ], config: kafka.topicConfig)

            let results = try TopicCollector(brokers: kafka.brokers, topic: kafka.resultsTopic, properties: kafka.consumerProperties,
                                             logger: logger)
            let producer = try KafkaProducer(brokers: kafka.brokers, properties: kafka.producerProperties, logger: logger)
            let redis = RedisConnection(configuration: try RedisConfiguration(url: frozen.redis.url), logger: logger)
            let http = HTTPClient(logger: logger)
            defer {
                results.close()
                producer.shutdown(timeoutMs: 2_000)
                redis.shutdown()
                http.shutdown()
            }

            var services: [any Service] = worker ? [Worker(config: frozen, logger: logger, tracer: tracers.worker)] : []
            let gatewayPort = PortBox()
            var gatewayObject: Gateway?
            if gateway {
                let g = try Gateway(config: frozen, logger: logger, tracer: tracers.gateway)
                gatewayObject = g
                services.append(try g.buildApplication { port in gatewayPort.set(port) })
            }
            let group = ServiceGroup(configuration: .init(services: services, logger: logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                defer { gatewayObject?.shutdown() }
                do {
                    let url = gateway ? "http://127.0.0.1:\(try await gatewayPort.wait())" : nil
                    try await body(TestStack(config: frozen, producer: producer, redis: redis, results: results, mock: mock,
                                             gatewayURL: url, http: http))
                } catch {
                    await group.triggerGracefulShutdown()
                    try? await tasks.waitForAll()
                    throw error
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
        }
    }

    /// Produces a job (a JSON object) to the requests topic.
    func submit(_ job: JSONValue) async throws {
        let id = job["id"]?.stringValue
        try await producer.send(topic: config.kafka.requestsTopic, key: id, value: try JSON.encode(job))
    }

    func submitRaw(_ bytes: [UInt8], key: String? = nil, topic: String? = nil) async throws {
        try await producer.send(topic: topic ?? config.kafka.requestsTopic, key: key, value: bytes)
    }

    /// Waits until the worker group has committed every message of the requests topic
    /// (no lag on any partition) and returns the lag per partition it last saw.
    func waitForNoLag(timeout: Duration = .seconds(15)) async throws -> [Int32: Int64] {
        let kafka = config.kafka
        let deadline = ContinuousClock.now + timeout
        var lag: [Int32: Int64] = [:]
        repeat {
            lag = try KafkaAdmin.groupLag(brokers: kafka.brokers, group: kafka.groupID, topic: kafka.requestsTopic,
                                          logger: TestServices.logger)
            if !lag.isEmpty && lag.values.allSatisfy({ $0 == 0 }) { return lag }
            try await Task.sleep(for: .milliseconds(100))
        } while ContinuousClock.now < deadline
        return lag
    }

    /// The results, decoded, keyed by job id, once `count` distinct ids have arrived. A job
    /// given two results is an issue unless the test allows it (a worker killed or a
    /// partition moved while jobs ran: the job id is the idempotency key then).
    func waitForResults(
        _ count: Int, timeout: Duration = .seconds(60), duplicates: TopicCollector.Duplicates = .forbidden,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> [String: UnifiedResponse] {
        let messages = try await results.waitForDistinctKeys(
            count, timeout: timeout, duplicates: duplicates, sourceLocation: sourceLocation)
        var out: [String: UnifiedResponse] = [:]
        for m in messages {
            out[m.keyString ?? ""] = try JSON.decode(UnifiedResponse.self, from: m.value)
        }
        return out
    }

    /// The job's replay stream, decoded.
    func events(of jobID: String) async throws -> [JSONValue] {
        let reply = try await redis.execute(RedisCommand("XRANGE", RedisKeys.events(jobID), "-", "+"))
        return try (reply.array ?? []).map { entry in
            let fields = try #require(entry.array?.last?.array)
            let bytes = try #require(fields[1].bytes)
            return try JSON.decode(JSONValue.self, from: bytes)
        }
    }

    /// A GET to the gateway, body collected.
    func get(_ path: String, headers: HTTPHeaders = [:]) async throws -> (Int, [UInt8]) {
        let base = try #require(gatewayURL)
        let url = base + path
        let response = try await http.execute(HTTPRequest(method: "GET", url: url, headers: headers, totalTimeout: .seconds(60)))
        return (response.status, try await response.body.collect(upTo: 16 << 20))
    }

    func post(_ path: String, json: JSONValue, headers: HTTPHeaders = ["content-type": "application/json"]) async throws -> (Int, JSONValue) {
        let base = try #require(gatewayURL)
        let url = base + path
        let response = try await http.execute(HTTPRequest(method: "POST", url: url, headers: headers, body: try JSON.encode(json), totalTimeout: .seconds(60)))
        let body = try await response.body.collect(upTo: 16 << 20)
        return (response.status, (try? JSON.decode(JSONValue.self, from: body)) ?? .null)
    }
}

/// Reads a topic from the start with a group of its own and keeps every message.
final class TopicCollector: Sendable {
    private let consumer: KafkaConsumer
    private let task: Task<Void, Never>

    init(brokers: String, topic: String, properties: [String: String] = [:], logger: Logger) throws {
        let consumer = try KafkaConsumer(
            brokers: brokers, groupID: "reader-\(UUID().uuidString.prefix(8))", topics: [topic], properties: properties, logger: logger)
        self.consumer = consumer
        let sink = Sink()
        self.task = Task { for await m in consumer.messages { sink.append(m) } }
        self.sink = sink
    }

    private let sink: Sink

    private final class Sink: Sendable {
        let messages = Mutex<[KafkaMessage]>([])
        func append(_ m: KafkaMessage) { messages.withLock { $0.append(m) } }
    }

    var all: [KafkaMessage] { sink.messages.withLock { $0 } }

    /// Whether a test's jobs may legitimately give a key twice (a broker restart makes the
    /// producer retry; the job id is the idempotency key then).
    enum Duplicates { case forbidden, allowed }

    /// Waits until messages with `count` distinct keys have arrived; returns the last
    /// message of each key. Every message is kept: unless the test allows duplicates, a key
    /// that arrived more than once is recorded as an issue, so a result produced twice
    /// cannot hide behind the one kept.
    func waitForDistinctKeys(
        _ count: Int, timeout: Duration, duplicates: Duplicates = .forbidden,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> [KafkaMessage] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let messages = all
            var byKey: [String: KafkaMessage] = [:]
            var seen: [String: Int] = [:]
            for m in messages {
                byKey[m.keyString ?? ""] = m
                seen[m.keyString ?? "", default: 0] += 1
            }
            let done = byKey.count >= count
            if done || ContinuousClock.now > deadline {
                if !done {
                    Issue.record("only \(byKey.count) of \(count) messages arrived within \(timeout)", sourceLocation: sourceLocation)
                }
                if duplicates == .forbidden {
                    for (key, n) in seen where n > 1 {
                        Issue.record("key \(key) arrived \(n) times", sourceLocation: sourceLocation)
                    }
                }
                return Array(byKey.values)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// How many messages each key has had so far.
    var countsByKey: [String: Int] {
        var seen: [String: Int] = [:]
        for m in all { seen[m.keyString ?? "", default: 0] += 1 }
        return seen
    }

    func close() {
        consumer.close()
        task.cancel()
    }
}

/// The gateway's port, learned once the server runs.
final class PortBox: Sendable {
    private let port = Mutex<Int?>(nil)
    func set(_ p: Int) { port.withLock { $0 = p } }
    func wait() async throws -> Int {
        for _ in 0..<400 {
            if let p = port.withLock({ $0 }) { return p }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw TestFailure("the gateway did not start")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Parses an SSE body into events.
func parseSSE(_ body: [UInt8]) -> [SSEEvent] {
    var parser = SSEParser()
    return parser.feed(body)
}

/// The text of a chunk event's data.
func chunkText(_ data: JSONValue?) -> String {
    data?["choices"]?.arrayValue?.compactMap { $0["delta"]?["content"]?.stringValue }.joined() ?? ""
}

/// Returns once something accepts connections on the loopback port: the readiness
/// check for a server a test starts itself.
func waitUntilListening(port: Int) async throws {
    for _ in 0..<200 {
        if LoopbackPort.isListening(port) { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestFailure("nothing listens on port \(port)")
}

extension Trait where Self == ConditionTrait {
    /// The suite needs the Kafka broker and Redis that `make test` starts (or starts
    /// servers of its own); `make unit-test`, which has none, skips it.
    static var needsServices: Self {
        .enabled(if: TestServices.available, "needs the broker and Redis: run it with `make test`")
    }
}
