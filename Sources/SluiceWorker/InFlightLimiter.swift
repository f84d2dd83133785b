import SluiceCore
import Synchronization

/// Bounds the jobs running at once, in two lanes. Interactive work may use every slot;
/// batch work what is left of all but a reserve (a quarter, at least one), so an
/// interactive job always finds a slot soon even when a batch fills the worker. A freed
/// slot goes to a waiting interactive job first. `acquire` waits for a slot; the worker
/// pauses the lane's partitions before waiting, so waiting never holds up the broker.
final class InFlightLimiter: Sendable {
    private struct State {
        var inFlight = 0
        var interactive: [CheckedContinuation<Void, Never>] = []
        var batch: [CheckedContinuation<Void, Never>] = []
        var stopped = false
    }

    private let limit: Int
    /// The slots batch work may hold.
    let batchLimit: Int
    private let state = Mutex(State())

    init(limit: Int) {
        self.limit = limit
        self.batchLimit = limit > 1 ? max(1, limit - max(1, limit / 4)) : 1
    }

    var inFlight: Int { state.withLock { $0.inFlight } }
    var isFull: Bool { isFull(.interactive) }
    var isStopped: Bool { state.withLock { $0.stopped } }

    /// Shutdown: every waiter is let through at once (each then sees the shutdown and
    /// releases its slot), and so is every later `acquire`.
    func stop() {
        let waiting = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.stopped = true
            let all = s.interactive + s.batch
            s.inFlight += all.count
            s.interactive = []
            s.batch = []
            return all
        }
        for w in waiting { w.resume() }
    }

    func isFull(_ lane: JobPriority) -> Bool {
        state.withLock { s in
            switch lane {
            case .interactive: s.inFlight >= limit
            case .batch: s.inFlight >= batchLimit || !s.interactive.isEmpty
            }
        }
    }

    func acquire(_ lane: JobPriority = .interactive) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { s -> Bool in
                if s.stopped {
                    s.inFlight += 1
                    return true
                }
                switch lane {
                case .interactive:
                    if s.inFlight < limit {
                        s.inFlight += 1
                        return true
                    }
                    s.interactive.append(continuation)
                case .batch:
                    if s.inFlight < batchLimit && s.interactive.isEmpty {
                        s.inFlight += 1
                        return true
                    }
                    s.batch.append(continuation)
                }
                return false
            }
            if granted { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            // The slot passes straight to the next waiter: interactive first, batch only
            // within its share.
            if !s.interactive.isEmpty { return s.interactive.removeFirst() }
            if !s.batch.isEmpty && s.inFlight - 1 < batchLimit { return s.batch.removeFirst() }
            s.inFlight -= 1
            return nil
        }
        next?.resume()
    }
}
