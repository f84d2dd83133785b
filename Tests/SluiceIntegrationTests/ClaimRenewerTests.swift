import Foundation
import SluiceCore
import SluiceRedis
import SluiceSupport
import Synchronization
import Testing
@testable import SluiceWorker

/// The one task that renews every run claim of a worker, against the real Redis: the
/// claims due are renewed and the young ones left alone, a claim another run took stops
/// its run, and a claim's release never overtakes a renew of it.
@Suite(.needsServices, .timeLimit(.minutes(1)))
struct ClaimRenewerTests {
    func withRenewer(_ body: (ClaimRenewer, RedisConnection) async throws -> Void) async throws {
        let redis = RedisConnection(configuration: try RedisConfiguration(url: try TestServices.redisURL()), logger: TestServices.logger)
        defer { redis.shutdown() }
        try await body(ClaimRenewer(redis: redis), redis)
    }

    func newJobID() -> String { "renew-\(UUID().uuidString.prefix(8).lowercased())" }

    /// Claims `jobID` for `run` with a lease of `ms`, as another worker's run would.
    func hold(_ jobID: String, run: String, ms: Int, _ redis: RedisConnection) async throws {
        #expect(try await redis.execute(RedisCommand("SET", RedisKeys.run(jobID), run, "PX", String(ms))) == .status("OK"))
    }

    func leaseLeft(_ jobID: String, _ redis: RedisConnection) async throws -> Int64 {
        try await redis.execute(RedisCommand("PTTL", RedisKeys.run(jobID))).int ?? -3
    }

    var afterOnePeriod: Double { MonotonicClock.now() + ClaimRenewer.period + 0.01 }

    @Test func claimsDueAreRenewedInOneGoAndYoungOnesAreLeftAlone() async throws {
        try await withRenewer { renewer, redis in
            let ids = [newJobID(), newJobID()]
            var tokens: [ClaimRenewer.Token] = []
            for id in ids {
                try await hold(id, run: "r1", ms: 2_000, redis)
                tokens.append(renewer.register(jobID: id, run: "r1") { Issue.record("a claim of ours was reported lost") })
            }
            // Registered just now: nothing is due, nothing renewed.
            #expect(renewer.takeDue(now: MonotonicClock.now()) == nil)
            #expect(try await leaseLeft(ids[0], redis) <= 2_000)
            let due = try #require(renewer.takeDue(now: afterOnePeriod))
            #expect(due.commands.count == 2, "both claims in one round trip")
            renewer.finish(due, replies: try await redis.execute(due.commands))
            for id in ids {
                let left = try await leaseLeft(id, redis)
                #expect(left > 9_000, "the lease of \(id) was renewed to \(left) ms")
            }
            // Renewed: not due again until a period later.
            #expect(renewer.takeDue(now: MonotonicClock.now() + 0.5) == nil)
            for token in tokens { renewer.end(token, release: true) }
            #expect(renewer.count == 0)
            _ = try await redis.execute(RedisCommand("PING"))  // after the releases, same connection
            for id in ids { #expect(try await redis.execute(RedisCommand("EXISTS", RedisKeys.run(id))) == .integer(0)) }
        }
    }

    @Test func aClaimAnotherRunTookStopsThisRun() async throws {
        try await withRenewer { renewer, redis in
            let id = newJobID()
            // This run's lease lapsed and another run claimed the job.
            try await hold(id, run: "other", ms: 10_000, redis)
            let lost = Mutex(0)
            _ = renewer.register(jobID: id, run: "mine") { lost.withLock { $0 += 1 } }
            await renewer.renewDue(now: afterOnePeriod)
            #expect(lost.withLock { $0 } == 1)
            #expect(renewer.count == 0, "a lost claim is no longer renewed")
            #expect(try await redis.execute(RedisCommand("GET", RedisKeys.run(id))) == .bulk(Array("other".utf8)))
            _ = try await redis.execute(RedisCommand("DEL", RedisKeys.run(id)))
        }
    }

    /// A run that ends while a renew of its claim is in flight leaves the release to the
    /// renewer, after that renew: a renew landing after the release would claim the job
    /// again for a whole lease (and a redelivery would wait for it).
    @Test func aReleaseNeverOvertakesARenewInFlight() async throws {
        try await withRenewer { renewer, redis in
            let id = newJobID()
            try await hold(id, run: "r1", ms: 10_000, redis)
            let token = renewer.register(jobID: id, run: "r1") { Issue.record("a claim of ours was reported lost") }
            let due = try #require(renewer.takeDue(now: afterOnePeriod))
            renewer.end(token, release: true)
            _ = try await redis.execute(RedisCommand("PING"))
            #expect(try await redis.execute(RedisCommand("EXISTS", RedisKeys.run(id))) == .integer(1),
                    "released before the renew in flight answered")
            renewer.finish(due, replies: try await redis.execute(due.commands))
            _ = try await redis.execute(RedisCommand("PING"))
            #expect(try await redis.execute(RedisCommand("EXISTS", RedisKeys.run(id))) == .integer(0), "released once it answered")
            #expect(renewer.count == 0)

            // A run that was taken over releases nothing: the claim is the other run's.
            let other = newJobID()
            try await hold(other, run: "r2", ms: 10_000, redis)
            let superseded = renewer.register(jobID: other, run: "r2") {}
            renewer.end(superseded, release: false)
            _ = try await redis.execute(RedisCommand("PING"))
            #expect(try await redis.execute(RedisCommand("EXISTS", RedisKeys.run(other))) == .integer(1))
            _ = try await redis.execute(RedisCommand("DEL", RedisKeys.run(other)))
        }
    }
}
