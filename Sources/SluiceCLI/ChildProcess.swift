import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, with a clean signal state.
///
/// Foundation's `Process` starts children from whichever thread it runs on, and those
/// threads block nearly every signal: the children inherit the mask and ignore SIGTERM.
/// Here the mask is emptied and the common signals reset to their defaults, so the
/// broker, Redis and Sluice's own children stop when asked.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `status` is behind `lock`; `pid` is immutable.
    let pid: pid_t
    let name: String
    private let lock = NSLock()
    private var status: Int32?

    init(name: String, path: String, arguments: [String], logPath: String) throws {
        self.name = name
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGQUIT, SIGCHLD] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, environ)
        guard rc == 0 else {
            throw ChildProcessError(message: "cannot start \(name) (\(path)): \(String(cString: strerror(rc)))")
        }
        self.pid = pid
    }

    /// Whether the child is still running; reaps it once it has exited.
    var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        if status != nil { return false }
        var s: Int32 = 0
        let r = waitpid(pid, &s, WNOHANG)
        if r == pid || r < 0 {
            status = s
            return false
        }
        return true
    }

    /// The exit status once it has exited (raw `waitpid` status).
    var exitDescription: String {
        lock.lock()
        defer { lock.unlock() }
        guard let s = status else { return "running" }
        if s & 0x7f == 0 { return "exit status \((s >> 8) & 0xff)" }
        return "signal \(s & 0x7f)"
    }

    func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
