import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceWorker
import Synchronization
import Testing
import Yams

#if canImport(Glibc)
import Glibc
#endif

/// A worker run in-process that a test can stop gracefully, as SIGTERM would.
final class WorkerHandle: Sendable {
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    let metrics = WorkerMetrics()

    init(config: SluiceConfig, logger: Logger = TestServices.logger, environment: [String: String] = [:]) {
        let group = ServiceGroup(configuration: .init(
            services: [Worker(config: config, logger: logger, environment: environment, metrics: metrics)], logger: logger))
        self.group = group
        self.task = Task { try await group.run() }
    }

    /// Graceful shutdown; returns when the worker has stopped.
    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}

/// A child process with a clean signal mask (Foundation's `Process` passes on the
/// blocked signals of the thread that starts it, and the child would ignore SIGTERM).
final class TestProcess: @unchecked Sendable {
    // @unchecked: `pid` is immutable; `reaped` is only touched behind `lock`.
    let pid: pid_t
    private let lock = NSLock()
    private var reaped = false

    init(_ path: String, _ arguments: [String], log: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, environ)
        guard rc == 0 else { throw TestFailure("cannot start \(path): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    func signal(_ s: Int32) { kill(pid, s) }

    /// Waits for the exit; returns the exit code (or 128 + signal).
    @discardableResult
    func wait(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            let r: pid_t = lock.withLock { reaped ? pid : waitpid(pid, &status, WNOHANG) }
            if r == pid {
                lock.withLock { reaped = true }
                return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    deinit {
        let done = lock.withLock { reaped }
        if !done {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
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

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p in
                _ = bind(fd, p, len)
                return getsockname(fd, p, &len)
            }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
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
