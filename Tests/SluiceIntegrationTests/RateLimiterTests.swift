import Foundation
import SluiceCore
import SluiceProviders
import SluiceRedis
@testable import SluiceWorker
import Synchronization
import Testing
import SluiceSupport

/// The shared limiter against the real Redis: what two workers see of one bucket.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(2)))
struct RateLimiterTests {
    func withLimiters(_ count: Int = 1, _ body: ([RateLimiter]) async throws -> Void) async throws {
        try await withLimiters(count) { limiters, _ in try await body(limiters) }
    }

    func withLimiters(_ count: Int, _ body: ([RateLimiter], [RedisConnection]) async throws -> Void) async throws {
        let connections = try (0..<count).map { _ in
            RedisConnection(configuration: try RedisConfiguration(url: try TestServices.redisURL()), logger: TestServices.logger)
        }
        defer { for c in connections { c.shutdown() } }
        for c in connections { _ = try await c.execute(RedisCommand("PING")) }
        try await body(connections.map { RateLimiter(redis: $0, logger: TestServices.logger, metrics: WorkerMetrics()) }, connections)
    }

    func freshBucket() -> RateLimiter.Bucket {
        RateLimiter.Bucket(provider: "p", baseURL: "http://limiter-test-\(UUID().uuidString)", apiKey: nil)
    }

    var far: Double { MonotonicClock.now() + 60 }

    @Test func tokensArePacedAndCorrectedWithRealUsage() async throws {
        try await withLimiters { limiters in
            let limiter = limiters[0]
            let bucket = freshBucket()
            // 600 tokens a minute: a bucket of 10, refilled at 10 a second.
            let first = try await limiter.admit(bucket, rpm: nil, tpm: 600, cost: 10, lane: .batch, deadline: far)
            #expect(first < 0.2)
            let second = try await limiter.admit(bucket, rpm: nil, tpm: 600, cost: 10, lane: .batch, deadline: far)
            #expect(second > 0.7, "the second request of a full second's tokens went after \(second) s")
            // The request used nothing after all: its tokens come back, the next goes at once.
            limiter.settle(bucket, tpm: 600, estimated: 10, actual: 0)
            let third = try await limiter.admit(bucket, rpm: nil, tpm: 600, cost: 10, lane: .batch, deadline: far)
            #expect(third < 0.3, "refunded tokens were not there: waited \(third) s")
        }
    }

    @Test func twoWorkersShareOneRequestLimit() async throws {
        try await withLimiters(2) { limiters in
            let bucket = freshBucket()
            let start = MonotonicClock.now()
            // 600 rpm: one request every 100 ms, whichever worker asks.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        _ = try await limiters[i % 2].admit(bucket, rpm: 600, tpm: nil, cost: 0, lane: .batch, deadline: self.far)
                    }
                }
                try await group.waitForAll()
            }
            let elapsed = MonotonicClock.now() - start
            #expect(elapsed >= 1.8 && elapsed < 3.5, "20 admissions at 600 rpm took \(elapsed) s")
        }
    }

    @Test func aProvidersHoldHoldsEveryWorker() async throws {
        try await withLimiters(2) { limiters, connections in
            let bucket = freshBucket()
            limiters[0].observe(bucket, headers: RateLimitHeaders(retryAfter: 1), rateLimited: true)
            // The hold is sent without waiting for an answer; a command after it on the
            // same connection answers once it is stored.
            _ = try await connections[0].execute(RedisCommand("PING"))
            let waited = try await limiters[1].admit(bucket, rpm: nil, tpm: nil, cost: 0, lane: .batch, deadline: far)
            #expect(waited > 0.8, "the other worker waited \(waited) s of a 1 s hold")
        }
    }

    /// The run claim's round trip says whether a bucket is clear, so that a provider
    /// without a configured limit costs no admission round trip; it is not while a hold
    /// any worker set lasts, nor once a limit was learned. A cleared admission still
    /// waits out a hold this worker saw.
    @Test func theRunClaimSeesEveryWorkersHoldAndLearnedLimits() async throws {
        try await withLimiters(2) { limiters, connections in
            func claimFindsClear(_ bucket: RateLimiter.Bucket) async throws -> Bool {
                let id = "clear-\(UUID().uuidString.prefix(8).lowercased())"
                let outcome = await RunClaim.claim(jobID: id, run: "r1", tenant: "default", ttlSeconds: 60, bucket: bucket,
                                                   redis: connections[1])
                _ = try await connections[1].execute([RedisCommand("DEL", RedisKeys.run(id)), RedisCommand("DEL", RedisKeys.meta(id))])
                guard case .claimed(_, _, let clear) = outcome else {
                    Issue.record("the claim of a fresh job id answered \(outcome)")
                    return false
                }
                return clear
            }
            let held = freshBucket()
            #expect(try await claimFindsClear(held))
            // Another worker's 429.
            limiters[0].observe(held, headers: RateLimitHeaders(retryAfter: 1), rateLimited: true)
            _ = try await connections[0].execute(RedisCommand("PING"))
            #expect(try await !claimFindsClear(held), "a hold another worker set")
            let waited = try await limiters[1].admit(held, rpm: nil, tpm: nil, cost: 0, lane: .batch, deadline: far)
            #expect(waited > 0.5, "the admission after an unclear claim waited \(waited) s of the hold")
            #expect(try await claimFindsClear(held), "the hold is over")

            let learned = freshBucket()
            limiters[0].observe(learned, headers: RateLimitHeaders(requestLimit: 60, requestsRemaining: 59), rateLimited: false)
            _ = try await connections[0].execute(RedisCommand("PING"))
            #expect(try await !claimFindsClear(learned), "a learned limit")

            // This worker's own hold, seen before Redis could say anything.
            let local = freshBucket()
            limiters[1].observe(local, headers: RateLimitHeaders(retryAfter: 1), rateLimited: true)
            let cleared = try await limiters[1].admit(local, rpm: nil, tpm: nil, cost: 0, lane: .batch, deadline: far, cleared: true)
            #expect(cleared > 0.8, "a cleared admission waited \(cleared) s of its own worker's 1 s hold")
        }
    }

    @Test func aLimitNobodyConfiguredIsLearnedFromHeaders() async throws {
        try await withLimiters { limiters in
            let limiter = limiters[0]
            let bucket = freshBucket()
            limiter.observe(bucket, headers: RateLimitHeaders(requestLimit: 60, requestsRemaining: 59), rateLimited: false)
            _ = try await limiter.admit(bucket, rpm: nil, tpm: nil, cost: 0, lane: .batch, deadline: far)
            let second = try await limiter.admit(bucket, rpm: nil, tpm: nil, cost: 0, lane: .batch, deadline: far)
            #expect(second > 0.8, "a learned 60 rpm spaced requests by \(second) s")
        }
    }

    @Test func interactiveAdmissionsGoFirst() async throws {
        try await withLimiters { limiters in
            let limiter = limiters[0]
            let bucket = freshBucket()
            _ = try await limiter.admit(bucket, rpm: 240, tpm: nil, cost: 0, lane: .batch, deadline: far)
            let order = Admitted()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<4 {
                    group.addTask {
                        _ = try await limiter.admit(bucket, rpm: 240, tpm: nil, cost: 0, lane: .batch, deadline: self.far)
                        order.append("batch-\(i)")
                    }
                }
                try await Task.sleep(for: .milliseconds(50))
                group.addTask {
                    _ = try await limiter.admit(bucket, rpm: 240, tpm: nil, cost: 0, lane: .interactive, deadline: self.far)
                    order.append("interactive")
                }
                try await group.waitForAll()
            }
            let seen = order.all
            #expect(seen.first == "interactive", "admitted in the order \(seen)")
        }
    }

    /// Interactive first across workers too: while an interactive admission waits on one
    /// worker, a batch one on another steps back, even one that needs no tokens and
    /// would otherwise go at once.
    @Test func anInteractiveAdmissionWaitingOnOneWorkerHoldsBackBatchOnAnother() async throws {
        try await withLimiters(2) { limiters, connections in
            let bucket = freshBucket()
            // 600 tokens a minute: the first request takes the whole second's worth.
            _ = try await limiters[0].admit(bucket, rpm: nil, tpm: 600, cost: 10, lane: .batch, deadline: far)
            let order = Admitted()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    _ = try await limiters[0].admit(bucket, rpm: nil, tpm: 600, cost: 10, lane: .interactive, deadline: self.far)
                    order.append("interactive")
                }
                // The interactive admission waits for the tokens (about a second), and the
                // bucket says so to every worker.
                var marked = false
                for _ in 0..<50 where !marked {
                    marked = try await connections[1].execute(RedisCommand("HEXISTS", bucket.redisKey, "iw")).int == 1
                    if !marked { try await Task.sleep(for: .milliseconds(10)) }
                }
                #expect(marked, "the waiting interactive admission is not visible to other workers")
                group.addTask {
                    _ = try await limiters[1].admit(bucket, rpm: nil, tpm: 600, cost: 0, lane: .batch, deadline: self.far)
                    order.append("batch")
                }
                try await group.waitForAll()
            }
            #expect(order.all == ["interactive", "batch"])
        }
    }

    @Test func aWaitPastTheDeadlineExpires() async throws {
        try await withLimiters { limiters in
            let limiter = limiters[0]
            let bucket = freshBucket()
            _ = try await limiter.admit(bucket, rpm: 60, tpm: nil, cost: 0, lane: .batch, deadline: far)
            await #expect(throws: RateLimiter.Expired.self) {
                _ = try await limiter.admit(bucket, rpm: 60, tpm: nil, cost: 0, lane: .batch, deadline: MonotonicClock.now() + 0.3)
            }
        }
    }
}

/// The order admissions came in.
private final class Admitted: Sendable {
    private let names = Mutex<[String]>([])
    func append(_ name: String) { names.withLock { $0.append(name) } }
    var all: [String] { names.withLock { $0 } }
}
