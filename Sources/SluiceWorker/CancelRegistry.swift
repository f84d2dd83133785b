import Foundation
import SluiceCore
import Synchronization

/// Which jobs were asked to stop, and how to stop the ones running here.
///
/// Every worker reads every cancel (the job may run anywhere, or not have started yet),
/// so a cancel is remembered for `ttlSeconds` after it was asked: a job that starts after
/// its cancel arrived is cancelled at once instead of run.
final class CancelRegistry: Sendable {
    private struct Running {
        var job: Job
        var stop: @Sendable () -> Void
    }

    private struct State {
        var running: [String: [Int: Running]] = [:]
        var cancelled: [String: [CancelRequest]] = [:]
        var order: [String] = []
        var nextToken = 0
    }

    private let state = Mutex(State())
    /// How many cancelled ids are remembered.
    private let capacity: Int
    /// How long a cancel holds: the event TTL, for which the job's id stays owned.
    private let ttlSeconds: Double
    private let now: @Sendable () -> Double

    init(ttlSeconds: Double, capacity: Int = 100_000, now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.ttlSeconds = ttlSeconds
        self.capacity = capacity
        self.now = now
    }

    /// Records a cancel and stops the jobs it applies to that run here. Returns whether
    /// it stopped any. A cancel older than the TTL is ignored.
    @discardableResult
    func cancel(_ request: CancelRequest) -> Bool {
        guard isLive(request) else { return false }
        let handlers: [@Sendable () -> Void] = state.withLock { s in
            if s.cancelled[request.jobID] == nil {
                s.order.append(request.jobID)
                if s.order.count > capacity {
                    let dropped = s.order.removeFirst(s.order.count - capacity)
                    for id in dropped { s.cancelled[id] = nil }
                }
            }
            s.cancelled[request.jobID, default: []].append(request)
            return (s.running[request.jobID] ?? [:]).values.filter { request.applies(to: $0.job) }.map(\.stop)
        }
        for h in handlers { h() }
        return !handlers.isEmpty
    }

    /// Whether a cancel that still holds applies to `job`.
    func isCancelled(_ job: Job) -> Bool {
        state.withLock { s in
            (s.cancelled[job.id] ?? []).contains { isLive($0) && $0.applies(to: job) }
        }
    }

    private func isLive(_ request: CancelRequest) -> Bool {
        now() - request.at < ttlSeconds
    }

    /// Registers a running job's stop handler; returns a token for `unregister`.
    func register(_ job: Job, stop: @escaping @Sendable () -> Void) -> Int {
        state.withLock { s in
            s.nextToken += 1
            s.running[job.id, default: [:]][s.nextToken] = Running(job: job, stop: stop)
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
