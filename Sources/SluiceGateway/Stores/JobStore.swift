import SluiceCore
import SluiceRedis

/// What the gateway knows of a job: its owner, the submission it came from (none for a
/// job produced straight to Kafka), and whether a cancel was asked.
public struct JobMeta: Sendable, Equatable {
    public var tenant: String
    public var submissionID: String?
    public var cancelRequested: Bool

    public init(tenant: String, submissionID: String? = nil, cancelRequested: Bool = false) {
        self.tenant = tenant
        self.submissionID = submissionID
        self.cancelRequested = cancelRequested
    }
}

/// What the routes read and write of a job's keys, besides following its events: the
/// ownership claim, the tenant's jobs in flight, the stored result, the last event, the
/// day's usage. Routes know only this; `RedisJobStore` is the real one, and route tests
/// use an in-memory store. Following a job's events live (`JobEventFollower`) stays on
/// Redis: the routes that stream are tested against a real Redis.
///
/// Every method that awaits throws when the store is not reachable; the routes answer 503.
public protocol JobStore: Sendable {
    /// Claims `jobID` for `tenant` (`JobOwnership`), recording `fields` in its meta for
    /// `ttlSeconds`; with `spendDay`, also reads the tenant's cost on that day, in micro-USD.
    func claim(jobID: String, tenant: String, ttlSeconds: Int, fields: [(String, String)], spendDay: UsageDay?) async throws
        -> (claim: JobOwnership.Claim, spentMicroUSD: Int64?)
    /// Counts `jobID` among the tenant's jobs in flight until `until` (Unix seconds),
    /// unless `cap` are counted already (expired ones dropped at `now`): false then.
    func admit(jobID: String, tenant: String, cap: Int, now: Int64, until: Int64, ttlSeconds: Int64) async throws -> Bool
    /// Frees the id's claim (no wait).
    func unclaim(jobID: String)
    /// Frees the id's claim and its place among the tenant's jobs in flight (no wait).
    func release(jobID: String, tenant: String)
    /// The job's meta; nil when it has no recorded owner.
    func meta(jobID: String) async throws -> JobMeta?
    /// Notes in the job's meta that a cancel was asked at `at` (no wait).
    func noteCancelRequested(jobID: String, at: Double)
    /// The job's final response as the worker stored it.
    func result(jobID: String) async throws -> [UInt8]?
    /// The stored result and, with none, the envelope of the job's last event.
    func progress(jobID: String) async throws -> (result: [UInt8]?, lastEvent: [UInt8]?)
    /// The tenant's usage hash for `day`, field by field.
    func usage(tenant: String, day: UsageDay) async throws -> [(String, String)]
    /// Throws unless the store answers (`/readyz`).
    func ping() async throws
    /// Closes the store's connection (after the server has stopped).
    func shutdown()
}

/// The job store on Redis (the keys of `RedisKeys`), over the gateway's command connection.
public struct RedisJobStore: JobStore {
    let redis: RedisConnection

    public init(redis: RedisConnection) {
        self.redis = redis
    }

    static let ownershipScript = RedisScript(JobOwnership.claimScript)

    // KEYS: the tenant's jobs in flight. ARGV: now, cap, job id, until, ttl s. 1: admitted.
    static let admitScript = RedisScript("""
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
        if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
        if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
        redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
        redis.call('EXPIRE', KEYS[1], ARGV[5])
        return 1
        """)

    public func claim(jobID: String, tenant: String, ttlSeconds: Int, fields: [(String, String)], spendDay: UsageDay?) async throws
        -> (claim: JobOwnership.Claim, spentMicroUSD: Int64?) {
        let args = JobOwnership.claimArguments(jobID: jobID, tenant: tenant, ttlSeconds: ttlSeconds, fields: fields)
        var commands = [RedisCommand(script: RedisJobStore.ownershipScript, evalArguments: args)]
        if let spendDay {
            commands.append(RedisCommand("HGET", RedisKeys.usage(tenant: tenant, day: spendDay), TenantUsage.Field.costMicroUSD))
        }
        let replies = try await redis.execute(commands)
        let reply = replies[0]
        if let error = reply.errorMessage { throw SluiceError(.internal, error) }
        guard let parts = reply.array, parts.count == 2, let claimed = parts[0].int else {
            throw SluiceError(.internal, "unexpected answer to the ownership claim")
        }
        let spent = spendDay == nil ? nil : Int64(replies[1].string ?? "0") ?? 0
        return (JobOwnership.Claim(claimed: claimed, owner: parts[1].string ?? "", tenant: tenant), spent)
    }

    public func admit(jobID: String, tenant: String, cap: Int, now: Int64, until: Int64, ttlSeconds: Int64) async throws -> Bool {
        let reply = try await redis.execute(RedisCommand(script: RedisJobStore.admitScript, keys: [RedisKeys.tenantJobs(tenant)],
                                                         arguments: [String(now), String(cap), jobID, String(until), String(ttlSeconds)]))
        if let error = reply.errorMessage { throw SluiceError(.internal, error) }
        return reply.int == 1
    }

    public func unclaim(jobID: String) {
        redis.send([RedisCommand("DEL", RedisKeys.meta(jobID))])
    }

    public func release(jobID: String, tenant: String) {
        redis.send([RedisCommand("DEL", RedisKeys.meta(jobID)), RedisCommand("ZREM", RedisKeys.tenantJobs(tenant), jobID)])
    }

    public func meta(jobID: String) async throws -> JobMeta? {
        let reply = try await redis.execute(RedisCommand("HMGET", RedisKeys.meta(jobID), "tenant", "submission_id", "cancel_requested_at"))
        let fields = reply.array ?? []
        guard fields.count == 3, let owner = fields[0].string else { return nil }
        return JobMeta(tenant: owner, submissionID: fields[1].string, cancelRequested: fields[2].string != nil)
    }

    public func noteCancelRequested(jobID: String, at: Double) {
        redis.send([RedisCommand("HSET", RedisKeys.meta(jobID), "cancel_requested_at", String(at))])
    }

    public func result(jobID: String) async throws -> [UInt8]? {
        try await redis.execute(RedisCommand("GET", RedisKeys.result(jobID))).bytes
    }

    public func progress(jobID: String) async throws -> (result: [UInt8]?, lastEvent: [UInt8]?) {
        let replies = try await redis.execute([
            RedisCommand("GET", RedisKeys.result(jobID)),
            RedisCommand("XREVRANGE", RedisKeys.events(jobID), "+", "-", "COUNT", "1"),
        ])
        var lastEvent: [UInt8]?
        if let entry = replies[1].array?.first, let fields = entry.array?.last?.array, fields.count >= 2, case .bulk(let envelope) = fields[1] {
            lastEvent = envelope
        }
        return (replies[0].bytes, lastEvent)
    }

    public func usage(tenant: String, day: UsageDay) async throws -> [(String, String)] {
        let reply = try await redis.execute(RedisCommand("HGETALL", RedisKeys.usage(tenant: tenant, day: day)))
        let flat = (reply.array ?? []).map { $0.string ?? "" }
        return stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], flat[$0 + 1]) }
    }

    public func ping() async throws {
        let reply = try await redis.execute(RedisCommand("PING"))
        if let error = reply.errorMessage { throw SluiceError(.internal, error) }
    }

    public func shutdown() {
        redis.shutdown()
    }
}
