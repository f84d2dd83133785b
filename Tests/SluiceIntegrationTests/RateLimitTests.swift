import Foundation
import SluiceCore
import SluiceMockProvider
import Testing

/// Provider rate limits shared by the workers: a batch larger than the limit allows at
/// once takes as long as the limit requires and every job succeeds; a 429 is a wait, not
/// an attempt; a job that cannot start before its deadline expires without a call.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(6)))
struct RateLimitTests {
    /// 150 jobs through two workers against a provider allowing `rpm` requests a minute
    /// per key. `SLUICE_TEST_RATE_LIMIT_RPM=60` runs it at a real provider's tier-one
    /// limit (about two and a half minutes); the default of 600 is the same property in
    /// a tenth of the time.
    @Test func aBatchOverTheProviderLimitSucceedsWithinIt() async throws {
        let rpm = ProcessInfo.processInfo.environment["SLUICE_TEST_RATE_LIMIT_RPM"].flatMap(Int.init) ?? 600
        let limit = MockRateLimit(rpm: rpm)
        let jobCount = 150
        try await TestStack.with(rateLimit: limit, worker: false, configure: { config in
            config.providers[0].rpm = rpm
        }) { stack in
            let a = WorkerHandle(config: stack.config)
            let b = WorkerHandle(config: stack.config)
            // The clock starts once both hold their partitions: the group's join and
            // rebalance (several seconds on the test broker) are not the limit's pace.
            try await WorkerHandle.waitUntilSettled([a, b], partitions: 3)
            let ids = (0..<jobCount).map { "rl-\($0)" }
            let start = ContinuousClock.now
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": .string("job \(id)")]) }
            let required = Double(jobCount - limit.burst) * 60 / Double(rpm)
            let results = try await stack.waitForResults(jobCount, timeout: .seconds(Int64(required * 3) + 60), duplicates: .allowed)
            let elapsed = (ContinuousClock.now - start) / .seconds(1)
            try await a.stop()
            try await b.stop()

            #expect(Set(results.keys) == Set(ids))
            let failed = results.values.filter { $0.status != .succeeded }
            #expect(failed.isEmpty, "\(failed.count) failed, e.g. \(failed.first?.error?.message ?? "")")
            let stats = stack.mock.stats.snapshot
            #expect(Double(stats.rateLimited) <= 0.15 * Double(stats.requests),
                    "\(stats.rateLimited) of \(stats.requests) provider requests were answered 429")
            // No faster than the provider allows, and not much slower: well under twice the
            // time, which a limit split between the two workers would take (on a quiet
            // machine it takes about 1.1x; a machine loaded to 45 took 1.5x).
            #expect(elapsed >= required * 0.9, "took \(elapsed) s; the limit requires \(required) s")
            #expect(elapsed <= required * 1.6 + 3, "took \(elapsed) s; the limit requires \(required) s")
            #expect(results.values.allSatisfy { $0.metrics.attempts == 1 })
            let waited = results.values.filter { $0.metrics.rateLimitWaitS > 0.05 }.count
            #expect(waited > jobCount / 2, "only \(waited) jobs report rate_limit_wait_s")
            let text = String(decoding: a.metrics.render(), as: UTF8.self) + String(decoding: b.metrics.render(), as: UTF8.self)
            #expect(text.contains("sluice_worker_rate_limit_admissions_total{provider=\"mock\"}"))
            #expect(text.contains("sluice_worker_rate_limit_waits_total{provider=\"mock\"}"))
        }
    }

    /// Nobody configured a limit and the provider tells it only with its 429s: those
    /// teach it. One attempt per job is allowed, and still every job succeeds.
    @Test func a429IsAWaitNotAnAttempt() async throws {
        let limit = MockRateLimit(rpm: 120, burst: 2, headersOnSuccess: false)
        try await TestStack.with(rateLimit: limit, configure: { config in
            config.worker.maxAttempts = 1
        }) { stack in
            let ids = (0..<12).map { "w429-\($0)" }
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": "x"]) }
            let results = try await stack.waitForResults(ids.count, timeout: .seconds(60))
            #expect(results.values.allSatisfy { $0.status == .succeeded },
                    "\(results.values.filter { $0.status != .succeeded }.map { $0.error?.message ?? "" })")
            #expect(results.values.allSatisfy { $0.metrics.attempts == 1 })
            #expect(stack.mock.stats.snapshot.rateLimited > 0, "the provider's limit was never reached")
            #expect(results.values.contains { $0.metrics.rateLimitWaitS > 0.2 })
        }
    }

    @Test func aJobPastItsDeadlineExpiresWithoutCallingTheProvider() async throws {
        try await TestStack.with { stack in
            let past = Date().timeIntervalSince1970 - 5
            try await stack.submit(["id": "late-1", "model": "default", "chat_input": "x", "deadline": .number(past)])
            let results = try await stack.waitForResults(1, timeout: .seconds(30))
            let result = try #require(results["late-1"])
            #expect(result.status == .failed)
            #expect(result.error?.type == "expired")
            #expect(stack.mock.stats.snapshot.requests == 0)
            // The result, and a job with the new fields, are what the schemas say.
            let raw = try #require(stack.results.all.first { $0.keyString == "late-1" })
            try await SchemaValidator.expectValid([
                ("result", try JSON.decode(JSONValue.self, from: raw.value)),
                ("job", ["id": "j", "model": "m", "chat_input": "x", "priority": "batch",
                                     "deadline": "2026-01-31T12:00:00Z", "max_queue_s": 30]),
            ])
            let events = try await stack.events(of: "late-1")
            #expect(!events.contains { $0["event"]?.stringValue == "chat_started" || $0["type"]?.stringValue == "chat_started" })
        }
    }

    /// Held by the limit longer than `max_queue_s` allows: expired, never sent.
    @Test func aJobThatCannotStartInItsQueueTimeExpires() async throws {
        try await TestStack.with(rateLimit: MockRateLimit(rpm: 30, burst: 1), configure: { config in
            config.providers[0].rpm = 30
        }) { stack in
            // The worker is in its group and the limit's next slot is two seconds away.
            try await stack.submit(["id": "q-0", "model": "default", "chat_input": "x"])
            _ = try await stack.waitForResults(1, timeout: .seconds(30))
            for id in ["q-1", "q-2", "q-3"] {
                try await stack.submit(["id": .string(id), "model": "default", "chat_input": "x", "max_queue_s": 2.5])
            }
            let results = try await stack.waitForResults(4, timeout: .seconds(30))
            let expired = results.values.filter { $0.error?.type == "expired" }
            #expect(results.values.filter { $0.status == .succeeded }.count == 2)
            #expect(expired.count == 2)
            #expect(expired.allSatisfy { $0.status == .failed && $0.metrics.attempts == 0 && $0.metrics.rateLimitWaitS > 0 })
            #expect(stack.mock.stats.snapshot.requests == 2)
            #expect(stack.mock.stats.snapshot.rateLimited == 0)
        }
    }
}
