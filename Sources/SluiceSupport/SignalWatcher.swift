import Synchronization
import UnixSignals

/// Signals (SIGINT, SIGTERM) turned into values, through swift-service-lifecycle's
/// `UnixSignalsSequence`: counted, the first remembered, and awaited. What a signal means
/// is the caller's to decide (`sluice dev` stops its stack, `sluice batch` drains on the
/// first and gives up on the second).
///
/// Children started with `ChildProcess` get every disposition reset, so none of them
/// inherits what this installs.
public final class SignalWatcher: Sendable {
    private struct State {
        var count = 0
        var first: UnixSignal?
        var waiters: [CheckedContinuation<UnixSignal?, Never>] = []
    }

    private final class Storage: Sendable {
        let state = Mutex(State())
    }

    private let storage = Storage()
    private let task: Task<Void, Never>

    public init(_ signals: [UnixSignal] = [.sigint, .sigterm]) async {
        let sequence = await UnixSignalsSequence(trapping: signals)
        let storage = self.storage
        task = Task {
            for await signal in sequence {
                let waiters = storage.state.withLock { s in
                    s.count += 1
                    if s.first == nil { s.first = signal }
                    defer { s.waiters = [] }
                    return s.waiters
                }
                for w in waiters { w.resume(returning: signal) }
            }
        }
    }

    deinit { task.cancel() }

    /// How many signals have come.
    public var count: Int { storage.state.withLock { $0.count } }

    /// The first signal that came, if any.
    public var received: UnixSignal? { storage.state.withLock { $0.first } }

    /// The first signal: at once if one came already, else when one comes; nil if the
    /// waiting task is cancelled.
    public func next() async -> UnixSignal? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<UnixSignal?, Never>) in
                let now: UnixSignal?? = storage.state.withLock { s in
                    if let first = s.first { return .some(first) }
                    if Task.isCancelled { return .some(nil) }
                    s.waiters.append(continuation)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiters = storage.state.withLock { s in
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w.resume(returning: nil) }
        }
    }
}
