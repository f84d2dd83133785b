import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A long-running child process (a broker, Redis, a worker, the gateway) started with
/// `posix_spawn`, its stdout and stderr going to a log file.
///
/// Its signal mask is emptied and every signal's disposition reset: the threads of a
/// Swift process block most signals, and a watcher of SIGINT/SIGTERM sets them to
/// `SIG_IGN`; a child would inherit both and ignore SIGTERM. Descriptors other than
/// 0, 1 and 2 are closed in the child, so it cannot hold the parent's sockets open.
///
/// swift-subprocess (`Command`) runs children to completion; it is not used here because
/// these children outlive the scope that starts them: they are started synchronously,
/// signalled from `defer` blocks and reaped later, which its scoped `run` cannot express.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let name: String
    /// The raw `waitpid` status once reaped.
    private let status = Mutex<Int32?>(nil)

    /// Starts `path` with `arguments`; stdout and stderr go to `logPath` (appended to, or
    /// truncated first), stdin reads `/dev/null`.
    public init(name: String, path: String, arguments: [String], logPath: String, truncateLog: Bool = true) throws {
        self.name = name
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND | (truncateLog ? O_TRUNC : 0), 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        _ = GNU.addCloseFrom(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigfillset(&defaults)
        // The kernel refuses to change these two, and posix_spawn would fail on them.
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            throw SupportError("cannot start \(name) (\(path)): \(String(cString: strerror(rc)))")
        }
        self.pid = pid
    }

    /// Whether the child is still running; reaps it once it has exited.
    public var isRunning: Bool {
        status.withLock { status in
            if status != nil { return false }
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid || r < 0 {
                status = s
                return false
            }
            return true
        }
    }

    /// The exit code (128 + the signal for a child killed by one); nil while running.
    public var exitCode: Int32? {
        guard !isRunning, let s = status.withLock({ $0 }) else { return nil }
        return s & 0x7f == 0 ? (s >> 8) & 0xff : 128 + (s & 0x7f)
    }

    /// `exit status N`, `signal N` or `running`.
    public var exitDescription: String {
        guard !isRunning, let s = status.withLock({ $0 }) else { return "running" }
        return s & 0x7f == 0 ? "exit status \((s >> 8) & 0xff)" : "signal \(s & 0x7f)"
    }

    /// Sends `signal` unless the child has been reaped (its pid may be another's by then).
    public func signal(_ signal: Int32) {
        status.withLock { status in
            if status == nil { _ = kill(pid, signal) }
        }
    }

    /// Waits for the exit, polling; the exit code, or nil if it still runs after `timeout`.
    @discardableResult
    public func wait(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let code = exitCode { return code }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return exitCode
    }

    /// SIGTERM, then SIGKILL if it still runs after `grace`; blocks until it is reaped.
    public func stop(grace: Duration = .seconds(10)) {
        ChildProcess.stop([self], grace: grace)
    }

    /// SIGTERM to each (in order), then SIGKILL to any still running after `grace`;
    /// blocks until all are reaped.
    public static func stop(_ children: [ChildProcess], grace: Duration = .seconds(10), onKill: (ChildProcess) -> Void = { _ in }) {
        for child in children { child.signal(SIGTERM) }
        let deadline = ContinuousClock.now + grace
        for child in children {
            while child.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
            if child.isRunning {
                onKill(child)
                child.signal(SIGKILL)
                while child.isRunning { usleep(5_000) }
            }
        }
    }

    /// A child nobody stopped is killed with its owner.
    deinit {
        let reaped = status.withLock { $0 != nil }
        if !reaped {
            kill(pid, SIGKILL)
            var s: Int32 = 0
            while waitpid(pid, &s, 0) < 0 && errno == EINTR {}
        }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np`, which the Glibc module does
    /// not declare (it needs `_GNU_SOURCE`), looked up once.
    private enum GNU {
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        static let addCloseFrom: AddCloseFrom = unsafeBitCast(dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")!, to: AddCloseFrom.self)
    }
}

/// An error of the support layer: what failed and why, for people.
public struct SupportError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
