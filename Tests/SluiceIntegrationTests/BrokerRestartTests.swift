import Foundation
import SluiceCore
import SluiceKafka
import SluiceMockProvider
import SluiceRedis
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The broker going away and coming back empty (Tansu keeps everything in memory): the
/// worker survives, recovers its producer and consumer, loses no result it still holds,
/// and logs the outage in a few lines.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(4)))
struct BrokerRestartTests {
    @Test func theWorkerRecoversFromABrokerRestartWithoutLosingAResultOrFloodingTheLog() async throws {
        let broker = try TestBroker()
        defer { broker.kill() }
        try await broker.start()
        try await MockProviderServer.withRunning(defaults: MockBehavior(chunks: 4), logger: TestServices.logger) { mock in
            var config = try Self.config(broker: broker)
            config.worker.drainSeconds = 5
            config.providers = [.init(name: "mock", kind: .mock, baseURL: mock.baseURL)]
            config.models = ["default": ModelTarget(provider: "mock", model: "mock-1")]
            // Four partitions: the count Tansu gives a topic a reconnecting client's metadata
            // request creates before the test re-creates it (Tansu does so even for clients
            // with `allow.auto.create.topics=false`). With any other count the clients see
            // the partition count change under messages in flight.
            let topics = [(config.kafka.requestsTopic, 4), (config.kafka.resultsTopic, 4), (config.kafka.dlqTopic, 1), (config.kafka.controlTopic, 1)]
            try await broker.createTopics(topics)

            let dir = try TestPaths.tempDir("broker-restart")
            let configPath = try TestPaths.writeConfig(config, to: dir)
            let log = dir.appendingPathComponent("worker.log").path
            let level = ProcessInfo.processInfo.environment["SLUICE_TEST_WORKER_LOG"] ?? "info"
            let worker = try await TestProcess(try TestPaths.sluiceBinary(), ["worker", "--config", configPath, "--log-level", level], log: log)
            defer { worker.signal(SIGKILL) }

            let results = try TopicCollector(brokers: config.kafka.brokers, topic: config.kafka.resultsTopic, logger: TestServices.logger)
            defer { results.close() }
            let producer = try KafkaProducer(brokers: config.kafka.brokers, logger: TestServices.logger)
            defer { producer.shutdown(timeoutMs: 2_000) }
            let requestsTopic = config.kafka.requestsTopic
            @Sendable func submit(_ id: String, model: String) async throws {
                let job: JSONValue = ["id": .string(id), "provider": "mock", "model": .string(model), "chat_input": "x"]
                try await within(.seconds(30), "submitting \(id)") {
                    try await producer.send(topic: requestsTopic, key: id, value: try JSON.encode(job))
                }
            }

            // Before: the pipeline works.
            let before = (0..<3).map { "before-\($0)" }
            for id in before { try await submit(id, model: "m-1") }
            _ = try await results.waitForDistinctKeys(before.count, timeout: .seconds(30), duplicates: .allowed)

            // In flight when the broker dies: streams of 3 s, whose results are produced
            // while it is away. The worker holds them until a broker takes them.
            let inFlight = (0..<4).map { "inflight-\($0)" }
            for id in inFlight { try await submit(id, model: "m-chunks=20,delay=150") }
            for _ in 0..<400 where mock.stats.snapshot.activeStreams < inFlight.count {
                try await Task.sleep(for: .milliseconds(25))
            }
            try #require(mock.stats.snapshot.activeStreams == inFlight.count, "the in-flight jobs did not all start")

            // The outage: longer than the group session timeout (6 s), so the consumers
            // lose their partitions too.
            let linesBefore = Self.lines(log).count
            broker.kill()
            try await Task.sleep(for: .seconds(7))
            let outage = Array(Self.lines(log).dropFirst(linesBefore))
            #expect(await worker.wait(timeout: .milliseconds(1)) == nil, "the worker died while the broker was away")

            // The broker comes back empty: topics re-created, no committed offsets, no
            // producer state. Jobs sent now must all be run.
            try await broker.start()
            try await broker.createTopics(topics)
            let after = (0..<5).map { "after-\($0)" }
            for id in after { try await submit(id, model: "m-1") }
            let got = try await results.waitForDistinctKeys(before.count + inFlight.count + after.count, timeout: .seconds(60), duplicates: .allowed)
            let statuses = Dictionary(got.map { ($0.keyString ?? "", (try? JSON.decode(UnifiedResponse.self, from: $0.value))?.status) },
                                      uniquingKeysWith: { $1 })
            for id in inFlight + after {
                #expect(statuses[id] == .succeeded, "\(id): \(String(describing: statuses[id]))")
            }
            let recovery = Array(Self.lines(log).dropFirst(linesBefore))

            // A few lines per client for the whole outage and recovery, not one per retry.
            #expect(outage.count < 30, "\(outage.count) lines in a 7 s outage:\n\(outage.joined(separator: "\n"))")
            #expect(recovery.count < 40, "\(recovery.count) lines from the kill to the last result:\n\(recovery.joined(separator: "\n"))")
            #expect(outage.contains { $0.contains("Kafka brokers unreachable") })
            #expect(recovery.contains { $0.contains("Kafka brokers answer again") })
            #expect(!recovery.contains { $0.contains("critical") || $0.contains("Fatal") }, "\(recovery.joined(separator: "\n"))")

            #expect(await worker.wait(timeout: .milliseconds(1)) == nil, "the worker died after the broker came back")
            worker.signal(SIGTERM)
            #expect(await worker.wait() == 0, "a worker stopped with SIGTERM exits 0")
        }
    }

    @Test func aWorkerStoppedWhileTheBrokerIsAwayExitsWithinItsDrainTime() async throws {
        let broker = try TestBroker()
        defer { broker.kill() }
        try await broker.start()
        try await MockProviderServer.withRunning(defaults: MockBehavior(chunks: 4), logger: TestServices.logger) { mock in
            var config = try Self.config(broker: broker)
            config.worker.drainSeconds = 2
            config.providers = [.init(name: "mock", kind: .mock, baseURL: mock.baseURL)]
            config.models = ["default": ModelTarget(provider: "mock", model: "mock-1")]
            try await broker.createTopics([(config.kafka.requestsTopic, 1), (config.kafka.resultsTopic, 1), (config.kafka.dlqTopic, 1), (config.kafka.controlTopic, 1)])
            let dir = try TestPaths.tempDir("broker-away-stop")
            let configPath = try TestPaths.writeConfig(config, to: dir)
            let worker = try await TestProcess(try TestPaths.sluiceBinary(), ["worker", "--config", configPath, "--log-level", "warning"],
                                         log: dir.appendingPathComponent("worker.log").path)
            defer { worker.signal(SIGKILL) }
            let producer = try KafkaProducer(brokers: config.kafka.brokers, logger: TestServices.logger)
            let job: JSONValue = ["id": "held", "provider": "mock", "model": "m-chunks=4,delay=100", "chat_input": "x"]
            try await producer.send(topic: config.kafka.requestsTopic, key: "held", value: try JSON.encode(job))
            producer.shutdown(timeoutMs: 2_000)
            for _ in 0..<600 where mock.stats.snapshot.activeStreams == 0 { try await Task.sleep(for: .milliseconds(25)) }
            try #require(mock.stats.snapshot.activeStreams == 1, "the job did not start")
            // The broker goes away: the job finishes and its result has nowhere to go.
            broker.kill()
            for _ in 0..<400 where mock.stats.snapshot.activeStreams > 0 { try await Task.sleep(for: .milliseconds(25)) }
            try await Task.sleep(for: .milliseconds(500))
            let stoppedAt = ContinuousClock.now
            worker.signal(SIGTERM)
            let exit = await worker.wait(timeout: .seconds(60))
            let took = ContinuousClock.now - stoppedAt
            #expect(exit != nil, "SIGTERM with the broker away did not end the worker within 60 s")
            // drain_s (2 s), then closing the Kafka clients against a broker that is gone.
            #expect(took < .seconds(20), "SIGTERM took \(took) with the broker away")
        }
    }

    /// A config of its own topics and group on `broker`, with the suite's Redis.
    static func config(broker: TestBroker) throws -> SluiceConfig {
        let prefix = "b\(UUID().uuidString.prefix(8).lowercased())"
        var config = SluiceConfig()
        config.kafka.brokers = broker.address
        config.kafka.requestsTopic = "\(prefix).requests"
        config.kafka.resultsTopic = "\(prefix).results"
        config.kafka.dlqTopic = "\(prefix).dlq"
        config.kafka.controlTopic = "\(prefix).control"
        config.kafka.groupID = "\(prefix)-workers"
        config.redis.url = try TestServices.redisURL()
        return config
    }

    static func lines(_ path: String) -> [String] {
        (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
    }
}

/// Runs `body`, or fails naming `what` if it takes longer than `limit`. The body runs in
/// a task of its own and is abandoned at the deadline: a wait that does not honour
/// cancellation (a Kafka delivery) cannot hang the test.
func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let gate = OnceGate()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        Task {
            do {
                let value = try await body()
                if gate.pass() { continuation.resume(returning: value) }
            } catch {
                if gate.pass() { continuation.resume(throwing: error) }
            }
        }
        Task {
            try? await Task.sleep(for: limit)
            if gate.pass() { continuation.resume(throwing: TestFailure("\(what) took more than \(limit)")) }
        }
    }
}

/// Lets exactly one caller through.
final class OnceGate: Sendable {
    private let open = Mutex(true)
    func pass() -> Bool { open.withLock { o in defer { o = false }; return o } }
}

/// A Tansu broker of the test's own, on a fixed free port, that can be killed and started
/// again on the same port (empty: its storage is memory).
final class TestBroker: @unchecked Sendable {
    // @unchecked: `process` is only touched by the test's own task, one step at a time.
    let port = TestPaths.freePort()
    var address: String { "127.0.0.1:\(port)" }
    private let binary: String
    private let log: String
    private var process: TestProcess?

    init() throws {
        binary = try #require(ProcessInfo.processInfo.environment["SLUICE_TEST_TANSU"],
                              "SLUICE_TEST_TANSU is not set: run the integration tests with `make test`")
        log = try TestPaths.tempDir("tansu").appendingPathComponent("tansu.log").path
    }

    /// Starts the broker and waits until it accepts connections.
    func start() async throws {
        let url = "tcp://127.0.0.1:\(port)"
        process = try await TestProcess(binary, ["broker", "--listener-url", url, "--advertised-listener-url", url,
                                           "--storage-engine", "memory://tansu/"], log: log)
        let deadline = ContinuousClock.now + .seconds(20)
        while !Self.listening(port) {
            if ContinuousClock.now > deadline { throw TestFailure("tansu did not listen on \(port) within 20 s; see \(log)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// SIGKILL: the broker dies at once, its port with it (`TestProcess` sends it when
    /// let go; its task reaps the process).
    func kill() {
        process = nil
    }

    /// Creates the topics, retrying while the broker comes up.
    func createTopics(_ topics: [(String, Int)]) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                try KafkaAdmin.createTopics(brokers: address, topics: topics.map { (name: $0.0, partitions: $0.1) }, timeoutMs: 5_000)
                return
            } catch {
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    static func listening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
