import Foundation
import Logging
import SluiceCore
import SluiceKafka

#if canImport(Glibc)
import Glibc
#endif

/// A child process the bench started (the command line's `ChildProcess` conforms).
public protocol BenchProcess: AnyObject, Sendable {
    var pid: Int32 { get }
    var isRunning: Bool { get }
    func signal(_ signal: Int32)
}

/// Starts child processes: `(name, executable, arguments, log path)`.
public typealias BenchLauncher = @Sendable (_ name: String, _ path: String, _ arguments: [String], _ logPath: String) throws -> any BenchProcess

/// Every child of a run, stopped together (SIGTERM newest first, SIGKILL after 10 s)
/// whether the run ends, fails or is interrupted. Safe to stop twice.
public final class BenchChildren: @unchecked Sendable {
    // @unchecked: `processes` and `stopped` are behind `lock`; the rest is immutable.
    private let lock = NSLock()
    private var processes: [(name: String, process: any BenchProcess)] = []
    private var stopped = false
    private let launcher: BenchLauncher
    public let logDir: URL

    public init(logDir: URL, launcher: @escaping BenchLauncher) {
        self.logDir = logDir
        self.launcher = launcher
    }

    public func logPath(_ name: String) -> String { logDir.appendingPathComponent("\(name).log").path }

    @discardableResult
    public func start(_ name: String, _ path: String, _ arguments: [String]) throws -> any BenchProcess {
        try lock.withLock {
            guard !stopped else { throw BenchError("the bench is stopping") }
            let child = try launcher(name, path, arguments, logPath(name))
            processes.append((name, child))
            return child
        }
    }

    /// Runs a tool to its end: false, having stopped it, if it is still running after
    /// `timeout`. Reaped and forgotten either way: a finished tool is not a dead stack.
    public func run(_ name: String, _ path: String, _ arguments: [String], timeout: Duration) async throws -> Bool {
        let child = try start(name, path, arguments)
        let deadline = ContinuousClock.now + timeout
        while child.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let finished = !child.isRunning
        stop(child)
        return finished
    }

    /// Stops one child and waits (up to 10 s, then SIGKILL) for it to exit.
    public func stop(_ child: any BenchProcess) {
        child.signal(SIGTERM)
        Self.reap([child])
        lock.withLock { processes.removeAll { $0.process === child } }
    }

    public func stopAll() {
        let list = lock.withLock {
            stopped = true
            defer { processes.removeAll() }
            return processes.reversed().map(\.process)
        }
        for child in list { child.signal(SIGTERM) }
        Self.reap(list)
    }

    private static func reap(_ list: [any BenchProcess]) {
        let deadline = Date().addingTimeInterval(10)
        for child in list {
            while child.isRunning && Date() < deadline { usleep(20_000) }
            if child.isRunning {
                child.signal(SIGKILL)
                for _ in 0..<100 where child.isRunning { usleep(10_000) }
            }
        }
    }

    /// The first child that exited, with the tail of its log.
    public func deadChild() -> String? {
        let list = lock.withLock { processes }
        guard let dead = list.first(where: { !$0.process.isRunning }) else { return nil }
        return "\(dead.name) exited; its log, \(logPath(dead.name)):\n\(tail(dead.name))"
    }

    public func tail(_ name: String, lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logPath(name), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Waits until `port` accepts connections; fails if a child dies or time runs out.
    public func waitForPort(_ port: Int, name: String, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !LoopbackPort.isListening(port) {
            if let dead = deadChild() { throw BenchError("\(name) did not start: \(dead)") }
            guard ContinuousClock.now < deadline else {
                throw BenchError("\(name) did not listen on port \(port) within \(timeout); see \(logPath(name))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// Where the helper programs are.
public struct BenchTools: Sendable {
    public var sluice: String
    public var tansu: String
    public var redisServer: String
    public var redisBenchmark: String?
    public var python: String?

    public init(sluice: String, tansu: String, redisServer: String, redisBenchmark: String?, python: String?) {
        self.sluice = sluice
        self.tansu = tansu
        self.redisServer = redisServer
        self.redisBenchmark = redisBenchmark
        self.python = python
    }
}

/// The stack under test: Redis, the broker, topics, one worker and the gateway, on free
/// loopback ports, with the model `bench` served by the bench's provider.
struct BenchStack: Sendable {
    let config: SluiceConfig
    let configPath: String
    let redisPort: Int
    let gatewayPort: Int
    let worker: any BenchProcess
    let gateway: any BenchProcess
    let redis: any BenchProcess

    var gatewayURL: String { "http://127.0.0.1:\(gatewayPort)" }

    static let model = "bench"

    static func start(
        children: BenchChildren, tools: BenchTools, providerURL: String, maxInFlight: Int,
        kafkaProperties: [String: String] = [:], runDir: URL, logger: Logger
    ) async throws -> BenchStack {
        let redisPort = LoopbackPort.free()
        let kafkaPort = LoopbackPort.free()
        let gatewayPort = LoopbackPort.free()
        let redis = try children.start("redis", tools.redisServer, [
            "--port", "\(redisPort)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "20000",
        ])
        try children.start("broker", tools.tansu, [
            "broker", "--listener-url", "tcp://127.0.0.1:\(kafkaPort)",
            "--advertised-listener-url", "tcp://127.0.0.1:\(kafkaPort)", "--storage-engine", "memory://tansu/",
        ])
        try await children.waitForPort(redisPort, name: "redis")
        try await children.waitForPort(kafkaPort, name: "broker")

        var config = SluiceConfig()
        config.kafka.brokers = "127.0.0.1:\(kafkaPort)"
        config.kafka.groupID = "sluice-bench-workers"
        config.kafka.properties = kafkaProperties
        config.redis.url = "redis://127.0.0.1:\(redisPort)"
        config.redis.eventTTLSeconds = 600
        config.gateway.listen = "127.0.0.1:\(gatewayPort)"
        config.worker.maxInFlight = maxInFlight
        config.worker.maxAttempts = 1
        config.providers = [.init(name: "bench", kind: .openaiCompatible, baseURL: providerURL)]
        config.models = [model: ModelTarget(provider: "bench", model: "bench-1")]
        // JSON is YAML: the config file needs no YAML encoder.
        let configPath = runDir.appendingPathComponent("sluice.yaml").path
        try Data(JSON.encode(config)).write(to: URL(fileURLWithPath: configPath))

        try KafkaAdmin.createTopics(brokers: config.kafka.brokers, topics: [
            (config.kafka.requestsTopic, 4), (config.kafka.resultsTopic, 4), (config.kafka.dlqTopic, 1), (config.kafka.controlTopic, 1),
        ], config: config.kafka.topicConfig)
        let worker = try children.start("worker", tools.sluice, [
            "worker", "--config", configPath, "--log-level", "warning", "--max-in-flight", "\(maxInFlight)",
        ])
        let gateway = try children.start("gateway", tools.sluice, ["gateway", "--config", configPath, "--log-level", "warning"])
        try await children.waitForPort(gatewayPort, name: "gateway")
        return BenchStack(
            config: config, configPath: configPath, redisPort: redisPort, gatewayPort: gatewayPort,
            worker: worker, gateway: gateway, redis: redis)
    }
}
