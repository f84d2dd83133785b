import Synchronization

/// Permits for work in flight, waited for without blocking a thread.
///
/// Two kinds of callers may share it: `.full` ones may take every permit, `.limited`
/// ones only `limitedPermits` of them, and only while no `.full` caller waits (the
/// worker's interactive and batch lanes). A released permit passes straight to the next
/// waiter, a `.full` one first, so a waiter is never overtaken by a newcomer.
///
/// A waiting task that is cancelled stops waiting without a permit (`acquire` returns
/// false). After `stop()` every waiter and every later `acquire` gets a permit at once.
public final class AsyncSemaphore: Sendable {
    public enum Share: Sendable {
        case full, limited
    }

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var inUse = 0
        var full: [Waiter] = []
        var limited: [Waiter] = []
        var stopped = false
        var nextID: UInt64 = 0
    }

    public let permits: Int
    public let limitedPermits: Int
    private let state = Mutex(State())

    public init(permits: Int, limitedPermits: Int? = nil) {
        precondition(permits > 0, "a semaphore needs at least one permit")
        self.permits = permits
        self.limitedPermits = min(permits, limitedPermits ?? permits)
    }

    /// Permits held now.
    public var inUse: Int { state.withLock { $0.inUse } }
    public var isStopped: Bool { state.withLock { $0.stopped } }

    /// Whether an `acquire(share)` would wait now.
    public func isFull(_ share: Share = .full) -> Bool {
        state.withLock { s in
            switch share {
            case .full: s.inUse >= permits
            case .limited: s.inUse >= limitedPermits || !s.full.isEmpty
            }
        }
    }

    /// Waits for a permit; false, with no permit taken, if the task was cancelled first.
    public func acquire(_ share: Share = .full) async -> Bool {
        let id = state.withLock { s in
            defer { s.nextID += 1 }
            return s.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let granted: Bool? = state.withLock { s in
                    if s.stopped {
                        s.inUse += 1
                        return true
                    }
                    if Task.isCancelled { return false }
                    switch share {
                    case .full:
                        if s.inUse < permits {
                            s.inUse += 1
                            return true
                        }
                        s.full.append(Waiter(id: id, continuation: continuation))
                    case .limited:
                        if s.inUse < limitedPermits && s.full.isEmpty {
                            s.inUse += 1
                            return true
                        }
                        s.limited.append(Waiter(id: id, continuation: continuation))
                    }
                    return nil
                }
                if let granted { continuation.resume(returning: granted) }
            }
        } onCancel: {
            let waiter: Waiter? = state.withLock { s in
                if let i = s.full.firstIndex(where: { $0.id == id }) { return s.full.remove(at: i) }
                if let i = s.limited.firstIndex(where: { $0.id == id }) { return s.limited.remove(at: i) }
                return nil
            }
            waiter?.continuation.resume(returning: false)
        }
    }

    public func release() {
        let next: Waiter? = state.withLock { s in
            if !s.full.isEmpty { return s.full.removeFirst() }
            if !s.limited.isEmpty && s.inUse - 1 < limitedPermits { return s.limited.removeFirst() }
            s.inUse -= 1
            return nil
        }
        next?.continuation.resume(returning: true)
    }

    /// Shutdown: every waiter is let through at once (each then sees the shutdown and
    /// releases its permit), and so is every later `acquire`.
    public func stop() {
        let waiting: [Waiter] = state.withLock { s in
            s.stopped = true
            let all = s.full + s.limited
            s.inUse += all.count
            s.full = []
            s.limited = []
            return all
        }
        for w in waiting { w.continuation.resume(returning: true) }
    }
}
