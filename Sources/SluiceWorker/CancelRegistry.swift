import Foundation
import Synchronization

/// Which jobs were asked to stop, and how to stop the ones running here.
///
/// Every worker reads every cancel (the job may run anywhere, or not have started yet),
/// so a cancel is remembered for a while: a job that starts after its cancel arrived is
/// cancelled at once instead of run.
final class CancelRegistry: Sendable {
    private struct State {
        var running: [String: [Int: @Sendable () -> Void]] = [:]
        var cancelled: [String: Double] = [:]
        var order: [String] = []
        var nextToken = 0
    }

    private let state = Mutex(State())
    /// How many cancelled ids are remembered.
    private let capacity: Int

    init(capacity: Int = 100_000) { self.capacity = capacity }

    /// Records a cancel and stops the job if it runs here. Returns whether it did.
    @discardableResult
    func cancel(_ jobID: String) -> Bool {
        let handlers: [@Sendable () -> Void] = state.withLock { s in
            if s.cancelled[jobID] == nil {
                s.order.append(jobID)
                if s.order.count > capacity {
                    let dropped = s.order.removeFirst(s.order.count - capacity)
                    for id in dropped { s.cancelled[id] = nil }
                }
            }
            s.cancelled[jobID] = Date().timeIntervalSince1970
            return Array((s.running[jobID] ?? [:]).values)
        }
        for h in handlers { h() }
        return !handlers.isEmpty
    }

    func isCancelled(_ jobID: String) -> Bool {
        state.withLock { $0.cancelled[jobID] != nil }
    }

    /// Registers a running job's stop handler; returns a token for `unregister`.
    func register(_ jobID: String, stop: @escaping @Sendable () -> Void) -> Int {
        state.withLock { s in
            s.nextToken += 1
            s.running[jobID, default: [:]][s.nextToken] = stop
            return s.nextToken
        }
    }

    func unregister(_ jobID: String, token: Int) {
        state.withLock { s in
            s.running[jobID]?[token] = nil
            if s.running[jobID]?.isEmpty == true { s.running[jobID] = nil }
        }
    }
}

private extension Array {
    mutating func removeFirst(_ n: Int) -> [Element] {
        let head = Array(prefix(n))
        removeFirst(n) as Void
        return head
    }
}
