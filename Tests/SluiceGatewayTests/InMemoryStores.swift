import SluiceCore
import SluiceGateway
import SluiceKafka
import Synchronization

/// A job queue that keeps what is produced to it, in order; or refuses everything while
/// `down` (a broker that is not reachable).
final class InMemoryJobQueue: JobQueue {
    struct Record: Sendable {
        var topic: String
        var key: String
        var value: [UInt8]
    }

    private let state = Mutex<(records: [Record], down: Bool)>(([], false))

    var records: [Record] { state.withLock { $0.records } }

    func setDown(_ down: Bool) { state.withLock { $0.down = down } }

    func produce(topic: String, key: String, value: [UInt8], headers: [KafkaHeader]) async throws {
        try state.withLock { state in
            if state.down { throw SluiceError(.internal, "the queue is down") }
            state.records.append(Record(topic: topic, key: key, value: value))
        }
    }

    func ping(timeoutMs: Int32) async throws {
        if state.withLock({ $0.down }) { throw SluiceError(.internal, "the queue is down") }
    }

    func shutdown() {}
}

/// A job store in memory, with the semantics of the Redis one: a claim is refused for an
/// id another tenant holds, the tenant cap counts ids, results and usage are what a test
/// puts there (as a worker would).
final class InMemoryJobStore: JobStore {
    struct State {
        var metas: [String: JobMeta] = [:]
        var inFlight: [String: Set<String>] = [:]
        var results: [String: [UInt8]] = [:]
        var lastEvents: [String: [UInt8]] = [:]
        var usage: [String: [(String, String)]] = [:]
        var down = false
    }

    private let state = Mutex(State())

    func with<T>(_ body: (inout State) throws -> T) rethrows -> T { try state.withLock { try body(&$0) } }

    private func reachable() throws {
        if state.withLock({ $0.down }) { throw SluiceError(.internal, "the store is down") }
    }

    func claim(jobID: String, tenant: String, ttlSeconds: Int, fields: [(String, String)], spendDay: UsageDay?) async throws
        -> (claim: JobOwnership.Claim, spentMicroUSD: Int64?) {
        try reachable()
        return state.withLock { state in
            let spent = spendDay.map { day in
                Int64(state.usage["\(tenant):\(day)"]?.first { $0.0 == TenantUsage.Field.costMicroUSD }?.1 ?? "0") ?? 0
            }
            if let owner = state.metas[jobID]?.tenant {
                return (owner == tenant ? .ownedBySameTenant : .ownedByOther, spent)
            }
            state.metas[jobID] = JobMeta(tenant: tenant, submissionID: fields.first { $0.0 == "submission_id" }?.1)
            return (.claimed, spent)
        }
    }

    func admit(jobID: String, tenant: String, cap: Int, now: Int64, until: Int64, ttlSeconds: Int64) async throws -> Bool {
        try reachable()
        return state.withLock { state in
            var jobs = state.inFlight[tenant] ?? []
            if jobs.contains(jobID) { return true }
            guard jobs.count < cap else { return false }
            jobs.insert(jobID)
            state.inFlight[tenant] = jobs
            return true
        }
    }

    func unclaim(jobID: String) {
        state.withLock { _ = $0.metas.removeValue(forKey: jobID) }
    }

    func release(jobID: String, tenant: String) {
        state.withLock { state in
            state.metas[jobID] = nil
            state.inFlight[tenant]?.remove(jobID)
        }
    }

    func meta(jobID: String) async throws -> JobMeta? {
        try reachable()
        return state.withLock { $0.metas[jobID] }
    }

    func noteCancelRequested(jobID: String, at: Double) {
        state.withLock { $0.metas[jobID]?.cancelRequested = true }
    }

    func result(jobID: String) async throws -> [UInt8]? {
        try reachable()
        return state.withLock { $0.results[jobID] }
    }

    func progress(jobID: String) async throws -> (result: [UInt8]?, lastEvent: [UInt8]?) {
        try reachable()
        return state.withLock { ($0.results[jobID], $0.lastEvents[jobID]) }
    }

    func usage(tenant: String, day: UsageDay) async throws -> [(String, String)] {
        try reachable()
        return state.withLock { $0.usage["\(tenant):\(day)"] ?? [] }
    }

    func ping() async throws { try reachable() }

    func shutdown() {}
}
