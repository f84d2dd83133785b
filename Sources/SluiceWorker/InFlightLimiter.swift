import Synchronization

/// Bounds the jobs running at once. `acquire` waits for a slot; the worker pauses its
/// partitions before waiting, so waiting never holds up the broker.
final class InFlightLimiter: Sendable {
    private struct State {
        var inFlight = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let limit: Int
    private let state = Mutex(State())

    init(limit: Int) { self.limit = limit }

    var inFlight: Int { state.withLock { $0.inFlight } }
    var isFull: Bool { state.withLock { $0.inFlight >= limit } }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { s -> Bool in
                if s.inFlight < limit {
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
        let resume = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            if s.waiters.isEmpty {
                s.inFlight -= 1
                guard s.inFlight == 0 else { return [] }
                defer { s.drainWaiters = [] }
                return s.drainWaiters
            }
            // The slot passes straight to the next waiter.
            return [s.waiters.removeFirst()]
        }
        for continuation in resume { continuation.resume() }
    }

    /// Returns once nothing is in flight. Not cancellable: it is how a worker waits for
    /// jobs it has cancelled to wind down.
    func waitUntilEmpty() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let empty = state.withLock { s -> Bool in
                if s.inFlight == 0 { return true }
                s.drainWaiters.append(continuation)
                return false
            }
            if empty { continuation.resume() }
        }
    }
}
