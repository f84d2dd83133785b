import Subprocess
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A long-running child process (a broker, Redis, a worker, the gateway), run with
/// swift-subprocess in a task of its own, its stdout and stderr going to a log file and
/// its stdin reading `/dev/null`.
///
/// swift-subprocess starts it with an empty signal mask and every disposition reset (the
/// threads of a Swift process block most signals, and a watcher of SIGINT/SIGTERM sets
/// them to `SIG_IGN`; a child would inherit both and ignore SIGTERM), and with no
/// descriptor of ours but 0, 1 and 2, so it cannot hold the parent's sockets open.
///
/// The child outlives the call that starts it: its task runs `Subprocess.run` until the
/// child exits, and `stop()` cancels that task, which makes swift-subprocess tear the
/// child down (SIGTERM, then SIGKILL after the grace period) and reap it.
public final class ChildProcess: Sendable {
    public let pid: pid_t
    public let name: String
    private let run: Run
    private let task: Task<Void, Never>

    /// Starts `path` with `arguments`; stdout and stderr go to `logPath` (appended to, or
    /// truncated first). Stopping gives it `grace` between SIGTERM and SIGKILL.
    public init(
        name: String, path: String, arguments: [String], logPath: String, truncateLog: Bool = true,
        grace: Duration = .seconds(10)
    ) async throws {
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncateLog ? O_TRUNC : 0), 0o644)
        guard log >= 0 else {
            throw SupportError("cannot start \(name): cannot open its log \(logPath): \(String(cString: strerror(errno)))")
        }
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: grace)]
        let run = Run()
        self.task = Task { [options] in
            do {
                let result = try await Subprocess.run(
                    .path(.init(path)), arguments: Arguments(arguments), platformOptions: options,
                    input: .none, output: .fileDescriptor(.init(rawValue: log), closeAfterSpawningProcess: true),
                    error: .combinedWithOutput
                ) { execution in
                    run.started(execution)
                    await ChildProcess.waitForExit(execution.processIdentifier.value, name: name)
                    run.bodyEnds()
                }
                run.exited(result.terminationStatus)
            } catch {
                run.failed("cannot start \(name) (\(path)): \(error)")
            }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = run.state.withLock { s in
                if s.pid != 0 || s.failure != nil { return true }
                s.onStart = continuation
                return false
            }
            if now { continuation.resume() }
        }
        let pid = try run.state.withLock { s -> pid_t in
            if let failure = s.failure { throw SupportError(failure) }
            return s.pid
        }
        self.pid = pid
        self.name = name
        self.run = run
    }

    /// Whether the child is still running (false once it has exited and been reaped).
    public var isRunning: Bool { run.state.withLock { $0.status == nil } }

    /// The exit code (128 + the signal for a child killed by one); nil while running.
    public var exitCode: Int32? {
        run.state.withLock { s in
            switch s.status {
            case nil: nil
            case .exited(let code): code
            case .signaled(let signal): 128 + signal
            }
        }
    }

    /// `exit status N`, `signal N` or `running`.
    public var exitDescription: String {
        run.state.withLock { s in
            switch s.status {
            case nil: "running"
            case .exited(let code): "exit status \(code)"
            case .signaled(let signal): "signal \(signal)"
            }
        }
    }

    /// Sends `signal` while the child runs; nothing once it has exited (its pid may be
    /// another's by then).
    public func signal(_ signal: Int32) {
        run.state.withLock { s in
            try? s.execution?.send(signal: Signal(rawValue: signal))
        }
    }

    /// Waits for the exit: the exit code, or nil if it still runs after `timeout` or the
    /// waiting task is cancelled.
    @discardableResult
    public func wait(timeout: Duration = .seconds(30)) async -> Int32? {
        let run = self.run
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await run.exit() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return exitCode
    }

    /// Stops the child: SIGTERM, then SIGKILL if it still runs after its grace period;
    /// returns once it is reaped. True if it had to be killed.
    @discardableResult
    public func stop() async -> Bool {
        let wasRunning = isRunning
        task.cancel()
        await task.value
        return wasRunning && run.state.withLock { $0.status == .signaled(SIGKILL) }
    }

    /// Stops `children` together (SIGTERM to each, SIGKILL to any still running after its
    /// grace period) and returns once all are reaped; `onKill` hears of each child that
    /// had to be killed.
    public static func stop(_ children: [ChildProcess], onKill: @Sendable (ChildProcess) -> Void = { _ in }) async {
        let running = children.filter(\.isRunning)
        for child in running { child.task.cancel() }
        for child in running {
            await child.task.value
            if child.run.state.withLock({ $0.status == .signaled(SIGKILL) }) { onKill(child) }
        }
    }

    /// A child nobody stopped is killed with its owner; its task reaps it.
    deinit {
        signal(SIGKILL)
    }

    /// Returns once process `pid` has exited, leaving it for swift-subprocess to reap:
    /// until then the execution stays valid, and `signal` cannot reach a reused pid.
    /// `waitid` blocks, so it runs on a thread of its own.
    private static func waitForExit(_ pid: pid_t, name: String) async {
        var thread: DedicatedThread?
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            thread = DedicatedThread(name: "wait \(name)") {
                var info = siginfo_t()
                while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
                continuation.resume()
            }
        }
        thread?.join()
    }

    /// What the child's task and its owner share.
    private final class Run: Sendable {
        struct State {
            var pid: pid_t = 0
            var failure: String?
            var onStart: CheckedContinuation<Void, Never>?
            /// Set while `Subprocess.run`'s body runs, which is as long as the child is not reaped.
            var execution: Execution<NoInput, FileDescriptorOutput, CombinedErrorOutput>?
            var status: TerminationStatus?
            var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
            var nextWaiter = 0
        }

        let state = Mutex(State())

        func started(_ execution: Execution<NoInput, FileDescriptorOutput, CombinedErrorOutput>) {
            let onStart = state.withLock { s in
                s.pid = execution.processIdentifier.value
                s.execution = execution
                defer { s.onStart = nil }
                return s.onStart
            }
            onStart?.resume()
        }

        func bodyEnds() {
            state.withLock { $0.execution = nil }
        }

        func exited(_ status: TerminationStatus) {
            let (waiters, onStart) = state.withLock { s in
                s.status = status
                defer { s.waiters = [:]; s.onStart = nil }
                return (s.waiters.values, s.onStart)
            }
            onStart?.resume()
            for w in waiters { w.resume() }
        }

        /// The run threw: before the child started, or (unlikely) while reaping it.
        func failed(_ message: String) {
            let (waiters, onStart) = state.withLock { s in
                if s.pid == 0 { s.failure = message }
                s.execution = nil
                s.status = .exited(-1)
                defer { s.waiters = [:]; s.onStart = nil }
                return (s.waiters.values, s.onStart)
            }
            onStart?.resume()
            for w in waiters { w.resume() }
        }

        /// Returns once the child has exited and been reaped, or the task is cancelled.
        func exit() async {
            let id = state.withLock { s in
                defer { s.nextWaiter += 1 }
                return s.nextWaiter
            }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { s in
                        if s.status != nil || Task.isCancelled { return true }
                        s.waiters[id] = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
            }
        }
    }
}

/// An error of the support layer: what failed and why, for people.
public struct SupportError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
