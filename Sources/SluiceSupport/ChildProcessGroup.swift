import Foundation
import Synchronization

/// The child processes of one run (`sluice dev`, `sluice bench`), each logging to
/// `logDir/NAME.log`, stopped together whether the run ends, fails or is interrupted:
/// SIGTERM to each, SIGKILL to any still running after 10 s. Safe to stop twice.
public final class ChildProcessGroup: Sendable {
    private struct State {
        var processes: [ChildProcess] = []
        var stopped = false
    }

    private let state = Mutex(State())
    public let logDir: URL
    /// Told about a child that had to be killed.
    private let onKill: @Sendable (ChildProcess) -> Void

    public init(logDir: URL, onKill: @escaping @Sendable (ChildProcess) -> Void = { _ in }) {
        self.logDir = logDir
        self.onKill = onKill
    }

    /// Runs `body` with a group of its own and stops every child when `body` returns or throws.
    public static func with<Result>(
        logDir: URL, onKill: @escaping @Sendable (ChildProcess) -> Void = { _ in },
        _ body: (ChildProcessGroup) async throws -> Result
    ) async throws -> Result {
        let children = ChildProcessGroup(logDir: logDir, onKill: onKill)
        do {
            let result = try await body(children)
            await children.stopAll()
            return result
        } catch {
            await children.stopAll()
            throw error
        }
    }

    public func logPath(_ name: String) -> String { logDir.appendingPathComponent("\(name).log").path }

    @discardableResult
    public func start(_ name: String, _ path: String, _ arguments: [String]) async throws -> ChildProcess {
        try state.withLock { s in
            if s.stopped { throw SupportError("cannot start \(name): the run is stopping") }
        }
        let child = try await ChildProcess(name: name, path: path, arguments: arguments, logPath: logPath(name))
        let stopping = state.withLock { s in
            if !s.stopped { s.processes.append(child) }
            return s.stopped
        }
        if stopping {
            await child.stop()
            throw SupportError("cannot start \(name): the run is stopping")
        }
        return child
    }

    /// Starts a child for the time of `body`, stopping it when `body` returns or throws.
    public func with<Result>(
        _ name: String, _ path: String, _ arguments: [String], _ body: (ChildProcess) async throws -> Result
    ) async throws -> Result {
        let child = try await start(name, path, arguments)
        do {
            let result = try await body(child)
            await stop(child)
            return result
        } catch {
            await stop(child)
            throw error
        }
    }

    /// Runs a tool to its end: false, having stopped it, if it is still running after
    /// `timeout`. Reaped and forgotten either way: a finished tool is not a dead stack.
    public func run(_ name: String, _ path: String, _ arguments: [String], timeout: Duration) async throws -> Bool {
        let child = try await start(name, path, arguments)
        let finished = await child.wait(timeout: timeout) != nil
        await stop(child)
        return finished
    }

    /// Stops one child and waits (up to 10 s, then SIGKILL) for it to exit.
    public func stop(_ child: ChildProcess) async {
        await ChildProcess.stop([child], onKill: onKill)
        state.withLock { $0.processes.removeAll { $0 === child } }
    }

    public func stopAll() async {
        let list: [ChildProcess] = state.withLock { s in
            s.stopped = true
            defer { s.processes.removeAll() }
            return s.processes.reversed()
        }
        await ChildProcess.stop(list, onKill: onKill)
    }

    /// The first child that exited, with how and the tail of its log.
    public func deadChild() -> String? {
        let list = state.withLock { $0.processes }
        guard let dead = list.first(where: { !$0.isRunning }) else { return nil }
        return "\(dead.name) exited (\(dead.exitDescription)); its log, \(logPath(dead.name)):\n\(tail(dead.name))"
    }

    public func tail(_ name: String, lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logPath(name), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Waits until `port` accepts connections; fails if a child dies or time runs out.
    public func waitForPort(_ port: Int, name: String, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while !LoopbackPort.isListening(port) {
            if let dead = deadChild() { throw SupportError("\(name) did not start: \(dead)") }
            guard ContinuousClock.now < deadline else {
                throw SupportError("\(name) did not listen on port \(port) within \(timeout); see \(logPath(name))")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until a child exits (its description, as `deadChild()`) or the task is cancelled (nil).
    public func waitForExit() async -> String? {
        while !Task.isCancelled {
            if let dead = deadChild() { return dead }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }
}
