import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceWorker
import Synchronization
import Testing
import Yams
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

/// A worker run in-process that a test can stop gracefully, as SIGTERM would.
final class WorkerHandle: Sendable {
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    let metrics = WorkerMetrics()

    init(config: SluiceConfig, logger: Logger = TestServices.logger, environment: [String: String] = [:],
         commitInterval: Duration = .milliseconds(100)) {
        let group = ServiceGroup(configuration: .init(
            services: [Worker(config: config, logger: logger, environment: environment, metrics: metrics, commitInterval: commitInterval)],
            logger: logger))
        self.group = group
        self.task = Task { try await group.run() }
    }

    /// Graceful shutdown; returns when the worker has stopped.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }

    /// Waits until `workers` hold every partition of both lanes between them, each at least
    /// one where there are enough: the group's rebalance has finished.
    static func waitUntilSettled(_ workers: [WorkerHandle], partitions: Int, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        func settled(_ lane: JobPriority) -> Bool {
            let held = workers.map { $0.metrics.assignedPartitions(lane) }
            return held.reduce(0, +) == partitions && (workers.count > partitions || held.allSatisfy { $0 > 0 })
        }
        while !(settled(.interactive) && settled(.batch)) {
            guard ContinuousClock.now < deadline else {
                throw TestFailure("the group did not settle within \(timeout): interactive \(workers.map { $0.metrics.assignedPartitions(.interactive) }), batch \(workers.map { $0.metrics.assignedPartitions(.batch) })")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

/// The tests' long-running children (workers, gateways, Redis) are the support layer's.
typealias TestProcess = ChildProcess

extension ChildProcess {
    /// Starts `path`, appending its output to `log` (a test may restart a process onto
    /// the same log).
    convenience init(_ path: String, _ arguments: [String], log: String) async throws {
        try await self.init(name: URL(fileURLWithPath: path).lastPathComponent, path: path, arguments: arguments, logPath: log, truncateLog: false)
    }
}

enum TestPaths {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The `sluice` binary `swift build --build-tests` built next to the tests.
    static func sluiceBinary() throws -> String {
        let bundle = Bundle.main.bundleURL
        for dir in [bundle, bundle.deletingLastPathComponent(), packageRoot.appendingPathComponent(".build/debug")] {
            let p = dir.appendingPathComponent("sluice").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw TestFailure("no sluice binary next to the tests; build with `swift build --build-tests`")
    }

    static func tempDir(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func writeConfig(_ config: SluiceConfig, to dir: URL) throws -> String {
        let path = dir.appendingPathComponent("sluice.yaml").path
        try YAMLEncoder().encode(config).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func freePort() -> Int { LoopbackPort.free() }
}

/// Every log line a logger was given, for searching.
final class CapturedLogs: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func logger(_ label: String = "captured") -> Logger {
        var l = Logger(label: label) { label in Handler(label: label, sink: self) }
        l.logLevel = .trace
        return l
    }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }

    struct Handler: LogHandler {
        let label: String
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            let all = self.metadata.merging(metadata ?? [:], uniquingKeysWith: { $1 })
            sink.append("\(level) \(label): \(message) \(all)")
        }
    }
}
