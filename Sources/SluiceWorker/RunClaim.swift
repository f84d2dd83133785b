import SluiceCore
import SluiceRedis

/// One run of a job at a time, and no second run of a finished job.
///
/// A run claims the job with `SET sluice:job:{id}:run <run> NX PX <lease>` and renews the
/// lease while it runs (`ClaimRenewer`, one task for all the worker's claims); the claim is released once the result is stored. A message
/// delivered again (after a rebalance, a crash or a drain) meets one of three cases:
/// the result is stored (the job finished: its result is produced again, the provider is
/// not called), the claim is held (a run is still going, on the worker that had the
/// partition before: wait for it), or neither (run it, continuing the event `seq`).
///
/// Before any of that, the job's id is claimed for its tenant (`JobOwnership`): a job
/// whose id another tenant holds neither runs nor sees that tenant's stored result.
///
/// While Redis is unreachable jobs run unclaimed: delivery stays at least once.
enum RunClaim {
    /// How long a claim outlives a run that stopped renewing it (a killed worker).
    static let lease: Duration = .seconds(10)
    static let renewEvery: Duration = .seconds(3)

    enum Outcome {
        /// Ours; the replay stream's last seq so far (0 for a first run), when asked
        /// for, the tenant's spend today in micro-USD, and whether the rate-limit bucket
        /// asked about is clear (`RateLimiter.clearScript`; false when none was asked).
        case claimed(lastSeq: Int, spentMicroUSD: Int64?, bucketClear: Bool)
        /// The job finished before: its stored result.
        case finished([UInt8])
        /// Another run holds it.
        case heldElsewhere
        /// Redis did not answer.
        case unavailable
        /// The id belongs to another tenant's job (or to keys with no owner).
        case ownedByAnotherTenant
    }

    /// One round trip: the id for the tenant, the claim, the stored result and the last
    /// seq, pipelined; with `spendOn`, also the tenant's spend on that day (for its
    /// daily limit); with `bucket`, whether that rate-limit bucket is clear, so that the
    /// job's first admission needs no round trip of its own.
    static func claim(
        jobID: String, run: String, tenant: String, ttlSeconds: Int, spendOn day: UsageDay? = nil,
        bucket: RateLimiter.Bucket? = nil, redis: RedisConnection
    ) async -> Outcome {
        guard redis.isConnected else { return .unavailable }
        let replies: [RedisReply]
        do {
            let owner = JobOwnership.claimArguments(jobID: jobID, tenant: tenant, ttlSeconds: ttlSeconds)
            var commands = [
                RedisCommand(script: ownershipScript, evalArguments: owner),
                RedisCommand("SET", RedisKeys.run(jobID), run, "NX", "PX", String(lease.wholeMilliseconds)),
                RedisCommand("GET", RedisKeys.result(jobID)),
                RedisCommand("XREVRANGE", RedisKeys.events(jobID), "+", "-", "COUNT", "1"),
            ]
            if let day { commands.append(RedisCommand("HGET", RedisKeys.usage(tenant: tenant, day: day), TenantUsage.Field.costMicroUSD)) }
            if let bucket { commands.append(RedisCommand(script: RateLimiter.clearScript, keys: [bucket.redisKey], arguments: [])) }
            replies = try await redis.execute(commands)
        } catch {
            return .unavailable
        }
        let claimed = replies[1].string == "OK"
        if let parts = replies[0].array, parts.count == 2, let ownerClaimed = parts[0].int,
           JobOwnership.Claim(claimed: ownerClaimed, owner: parts[1].string ?? "", tenant: tenant) == .ownedByOther {
            if claimed { release(jobID: jobID, run: run, redis: redis) }
            return .ownedByAnotherTenant
        }
        if let result = replies[2].bytes, !result.isEmpty {
            if claimed { release(jobID: jobID, run: run, redis: redis) }
            return .finished(result)
        }
        guard claimed else { return .heldElsewhere }
        let spent = day == nil ? nil : Int64(replies[4].string ?? "0") ?? 0
        let clear = bucket != nil && replies[replies.count - 1].int == 1
        return .claimed(lastSeq: lastSeq(replies[3]), spentMicroUSD: spent, bucketClear: clear)
    }

    /// The command that extends the lease if the claim is still this run's, or takes it
    /// again if it is gone (Redis restarted empty). `ClaimRenewer` sends one for every
    /// claim due, in one round trip.
    static func renewCommand(jobID: String, run: String) -> RedisCommand {
        RedisCommand(script: renewScript, keys: [RedisKeys.run(jobID), RedisKeys.result(jobID)], arguments: [run, String(lease.wholeMilliseconds)])
    }

    /// What a renew's reply says: false only when another run holds the claim (an error
    /// reply says nothing about the claim).
    static func renewKept(_ reply: RedisReply) -> Bool {
        if reply.errorMessage != nil { return true }
        return reply.int != 0
    }

    /// Releases the claim if it is still this run's. Fire and forget, queued after the
    /// run's last event and result, so a waiting worker finds the result first.
    static func release(jobID: String, run: String, redis: RedisConnection) {
        var command = RedisCommand(script: releaseScript, keys: [RedisKeys.run(jobID)], arguments: [run])
        command.isPinned = true
        redis.send(command)
    }

    // KEYS: the run claim, the stored result. ARGV: run, lease ms. 1: ours (renewed or
    // taken again), 0: another run's.
    static let renewScript = RedisScript("""
        local v = redis.call('GET', KEYS[1])
        if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        if not v then
          -- Gone (Redis restarted empty, or the lease lapsed): take it again, unless
          -- the job's result is stored (then nothing is left to run twice).
          if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
          return 1
        end
        return 0
        """)

    // KEYS: the run claim. ARGV: run.
    static let releaseScript = RedisScript(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")

    static let ownershipScript = RedisScript(JobOwnership.claimScript)

    private static func lastSeq(_ reply: RedisReply) -> Int {
        guard let entry = reply.array?.first?.array?.first?.string,
              let dash = entry.firstIndex(of: "-"),
              let n = Int(entry[entry.index(after: dash)...])
        else { return 0 }
        return n
    }
}

extension Duration {
    /// Whole milliseconds, saturating.
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        return overflow ? (seconds < 0 ? .min : .max) : ms &+ attoseconds / 1_000_000_000_000_000
    }
}
