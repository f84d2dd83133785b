import Synchronization

/// Bounds the jobs running at once. `acquire` waits for a slot; the worker pauses its
/// partitions before waiting, so waiting never holds up the broker.
final class InFlightLimiter: Sendable {
    private struct State {
        var inFlight = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var stopped = false
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) { self.limit = limit }

    var inFlight: Int { state.withLock { $0.inFlight } }
    var isFull: Bool { state.withLock { $0.inFlight >= limit } }
    var isStopped: Bool { state.withLock { $0.stopped } }

    /// Shutdown: every waiter is let through at once (each then sees `isStopped`, and
    /// releases its slot), and so is every later `acquire`.
    func stop() {
        let waiting = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.stopped = true
            s.inFlight += s.waiters.count
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiting { w.resume() }
    }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { s -> Bool in
                if s.inFlight < limit || s.stopped {
                    s.inFlight += 1
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.inFlight -= 1
                return nil
            }
            // The slot passes straight to the next waiter.
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
