import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceMockProvider
import SluiceRedis
import Testing

/// Daily spend limits per tenant (`quotas`) and usage accounting (`GET /v1/usage`,
/// `sluice:usage:{tenant}:{day}`, the worker's per-tenant metrics). Every test uses
/// tenants of its own: the usage lives in Redis, which the suite shares.
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct QuotaTests {
    /// A dollar a token on the mock, so that costs are whole micro-dollars many times over.
    static let price = SluiceConfig.Price(input: 1_000_000, output: 1_000_000)

    static func tenant(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(6).lowercased())" }

    static func job(_ id: String, _ extra: [String: JSONValue] = [:]) -> JSONValue {
        .object(["id": .string(id), "model": "default", "chat_input": "count my tokens"].merging(extra) { $1 })
    }

    @Test func aTenantOverItsDailySpendIsRefusedUntilTheNextUTCDayAndOthersAreNot() async throws {
        let (spender, other) = (Self.tenant("spender"), Self.tenant("other"))
        let a: HTTPHeaders = ["authorization": "Bearer k-spender"]
        let b: HTTPHeaders = ["authorization": "Bearer k-other"]
        try await TestStack.with(gateway: true, configure: {
            $0.gateway.apiKeys = [.init(key: "k-spender", tenant: spender), .init(key: "k-other", tenant: other)]
            $0.pricing["mock/mock-1"] = Self.price
            // A few tokens' worth: the first job takes the spender past it.
            $0.quotas = .init(maxSpendUSDPerDay: 3)
        }) { stack in
            let tag = UUID().uuidString.prefix(6).lowercased()
            let first = try await stack.call("POST", "/v1/jobs", headers: a, json: Self.job("spend-\(tag)-1"))
            #expect(first.status == 202)
            let spent = try #require(try await stack.waitForResults(1)["spend-\(tag)-1"])
            #expect(spent.status == .succeeded)
            #expect((spent.metrics.costUSD ?? 0) > 3)

            // The next one: 429 naming the limit, retry at the next UTC midnight.
            let refused = try await stack.call("POST", "/v1/jobs", headers: a, json: Self.job("spend-\(tag)-2"))
            let now = Date().timeIntervalSince1970
            #expect(refused.status == 429)
            #expect(refused.json["error"]?["code"] == "quota_exceeded")
            #expect(refused.json["error"]?["type"] == "rate_limit_error")
            let message = refused.json["error"]?["message"]?.stringValue ?? ""
            #expect(message.contains("max_spend_usd_per_day") && message.contains("$3.00 a day") && message.contains("00:00 UTC"), "\(message)")
            let retryAfter = try #require(refused.headers["retry-after"].flatMap { Int($0) })
            let untilMidnight = UsageDay(unixSeconds: now).secondsUntilEnd(from: now)
            #expect(abs(retryAfter - untilMidnight) <= 5, "Retry-After \(retryAfter), midnight in \(untilMidnight) s")
            // The completion endpoints are refused the same way, before anything runs.
            let completion = try await stack.call("POST", "/v1/chat/completions", headers: a, json: [
                "model": "default", "messages": [["role": "user", "content": "hi"]],
            ])
            #expect(completion.status == 429)
            #expect(completion.json["error"]?["code"] == "quota_exceeded")
            // The refused id stays free, and nothing of it was produced.
            #expect(try await stack.call("GET", "/v1/jobs/spend-\(tag)-2", headers: a).status == 404)
            #expect(stack.mock.stats.snapshot.requests == 1)

            // Another tenant, under its own limit, is not held back.
            let others = try await stack.call("POST", "/v1/jobs", headers: b, json: Self.job("spend-\(tag)-b"))
            #expect(others.status == 202)
            _ = try await stack.waitForResults(2)
        }
    }

    @Test func aKafkaJobOverItsTenantsLimitFailsWithoutCallingTheProvider() async throws {
        let blocked = Self.tenant("blocked")
        try await TestStack.with(worker: false, configure: {
            $0.quotas = .init(tenants: [blocked: .init(maxSpendUSDPerDay: 0)])
        }) { stack in
            let worker = WorkerHandle(config: stack.config)
            try await stack.submit(Self.job("blocked-1", ["tenant": .string(blocked)]))
            let result = try #require(try await stack.waitForResults(1)["blocked-1"])
            #expect(result.status == .failed)
            #expect(result.error?.type == "quota_exceeded")
            #expect(result.error?.message.contains("max_spend_usd_per_day") == true)
            #expect(result.metrics.attempts == 0)
            #expect(stack.mock.stats.snapshot.requests == 0)
            let events = try await stack.events(of: "blocked-1").compactMap { $0["event"]?.stringValue }
            #expect(events == ["chat_response_failure", "chat_finished"])
            let raw = try #require(stack.results.all.first { $0.keyString == "blocked-1" })
            try await SchemaValidator.expectValid([("result", try JSON.decode(JSONValue.self, from: raw.value))])

            // Counted as the tenant's failed job, at no cost.
            let usage = try await Self.usage(of: blocked, stack: stack)
            #expect(usage.jobs == ["failed": 1])
            #expect(usage.costMicroUSD == 0)
            let text = String(decoding: worker.metrics.render(), as: UTF8.self)
            try await worker.stop()
            #expect(text.contains(#"sluice_worker_tenant_quota_refusals_total{tenant="\#(blocked)"} 1"#), "\(text)")
            #expect(text.contains(#"sluice_worker_tenant_jobs_total{tenant="\#(blocked)",status="failed"} 1"#))
        }
    }

    /// A gateway that let a job through (its limit was raised, or it raced another
    /// gateway) still finds the worker refusing it: the completion answers 429 with the
    /// worker's message and `Retry-After` until midnight.
    @Test func aJobTheWorkerRefusesAnswersItsCompletionWith429() async throws {
        try await TestStack.with(gateway: true, worker: false) { stack in
            var strict = stack.config
            strict.quotas = .init(maxSpendUSDPerDay: 0)
            let worker = WorkerHandle(config: strict)
            let answer = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "default", "messages": [["role": "user", "content": "hi"]],
            ])
            let now = Date().timeIntervalSince1970
            try await worker.stop()
            #expect(answer.status == 429)
            #expect(answer.json["error"]?["code"] == "quota_exceeded")
            #expect(answer.json["error"]?["message"]?.stringValue?.contains("provider was not called") == true, "\(answer.text)")
            let retryAfter = try #require(answer.headers["retry-after"].flatMap { Int($0) })
            #expect(abs(retryAfter - UsageDay(unixSeconds: now).secondsUntilEnd(from: now)) <= 5)
            #expect(stack.mock.stats.snapshot.requests == 0)
        }
    }

    /// The script that adds a job to its tenant's day adds each job once, however many
    /// runs of it finish.
    @Test func aJobIsAddedToItsTenantsDayOnceHoweverOftenItsRunsFinish() async throws {
        try await TestStack.with(worker: false) { stack in
            let tenant = Self.tenant("twice")
            let day = UsageDay(unixSeconds: Date().timeIntervalSince1970)
            let id = "twice-\(UUID().uuidString.prefix(6).lowercased())"
            let response = TenantUsageFixture.response(input: 7, output: 5, cost: 0.000012)
            var added: [Int64] = []
            for _ in 0..<3 {
                let args = TenantUsage.recordArguments(jobID: id, tenant: tenant, day: day, response: response)
                added.append(try await stack.redis.execute(RedisCommand(args.map { Array($0.utf8) })).int ?? -1)
            }
            #expect(added == [1, 0, 0])
            let usage = try await Self.usage(of: tenant, stack: stack)
            #expect(usage.promptTokens == 7 && usage.completionTokens == 5 && usage.costMicroUSD == 12)
            #expect(usage.jobs == ["succeeded": 1])
            // Another job of the tenant's adds to the same day.
            let other = TenantUsage.recordArguments(jobID: id + "-b", tenant: tenant, day: day, response: response)
            #expect(try await stack.redis.execute(RedisCommand(other.map { Array($0.utf8) })).int == 1)
            #expect(try await Self.usage(of: tenant, stack: stack).costMicroUSD == 24)
            _ = try await stack.redis.execute([RedisCommand("DEL", RedisKeys.meta(id)), RedisCommand("DEL", RedisKeys.meta(id + "-b"))])
        }
    }

    /// What `GET /v1/usage` answers adds up the finished jobs' results, counts a
    /// redelivered job once, and is the caller's tenant's alone; the worker's metrics
    /// say the same per tenant.
    @Test func usageAddsUpTheResultsOncePerJobAndOnlyForItsTenant() async throws {
        let (owner, stranger) = (Self.tenant("owner"), Self.tenant("nosy"))
        let a: HTTPHeaders = ["authorization": "Bearer k-owner"]
        let b: HTTPHeaders = ["authorization": "Bearer k-nosy"]
        try await TestStack.with(gateway: true, worker: false, configure: {
            $0.gateway.apiKeys = [.init(key: "k-owner", tenant: owner), .init(key: "k-nosy", tenant: stranger)]
            $0.pricing["mock/mock-1"] = Self.price
            $0.quotas = .init(tenants: [owner: .init(maxSpendUSDPerDay: 1_000)])
        }) { stack in
            let worker = WorkerHandle(config: stack.config)
            let tag = UUID().uuidString.prefix(6).lowercased()
            let ids = (1...3).map { "use-\(tag)-\($0)" }
            for id in ids.prefix(2) {
                #expect(try await stack.call("POST", "/v1/jobs", headers: a, json: Self.job(id)).status == 202)
            }
            // One straight from Kafka, for the same tenant, on a model that fails.
            try await stack.submit(Self.job(ids[2], ["tenant": .string(owner), "model": "mock/m-status=400"]))
            // And one of a tenant the configuration does not name.
            try await stack.submit(Self.job("use-\(tag)-unnamed", ["tenant": "unnamed-tenant"]))
            let results = try await stack.waitForResults(4)
            let mine = ids.compactMap { results[$0] }
            #expect(mine.map(\.status) == [.succeeded, .succeeded, .failed])

            func expectUsageMatchesResults(sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let answer = try await stack.call("GET", "/v1/usage", headers: a)
                #expect(answer.status == 200, sourceLocation: sourceLocation)
                let u = answer.json
                let today = UsageDay(unixSeconds: Date().timeIntervalSince1970)
                #expect(u["tenant"] == .string(owner), sourceLocation: sourceLocation)
                #expect(u["date"] == .string(today.description), sourceLocation: sourceLocation)
                #expect(u["prompt_tokens"]?.intValue == mine.reduce(0) { $0 + $1.metrics.inputTokens }, sourceLocation: sourceLocation)
                #expect(u["completion_tokens"]?.intValue == mine.reduce(0) { $0 + $1.metrics.outputTokens }, sourceLocation: sourceLocation)
                let cost = mine.reduce(Int64(0)) { $0 + MicroUSD.from(usd: $1.metrics.costUSD) }
                #expect(cost > 0)
                #expect(u["cost_usd"]?.doubleValue == MicroUSD.usd(cost), sourceLocation: sourceLocation)
                #expect(u["jobs"] == ["succeeded": 2, "failed": 1, "cancelled": 0, "timed_out": 0, "total": 3], sourceLocation: sourceLocation)
                #expect(u["limits"]?["max_spend_usd_per_day"] == 1_000, sourceLocation: sourceLocation)
                #expect(u["remaining"]?["spend_usd"]?.doubleValue == MicroUSD.usd(1_000_000_000 - cost), sourceLocation: sourceLocation)
                #expect(u["resets_at"] == .string("\(today.adding(days: 1))T00:00:00Z"), sourceLocation: sourceLocation)
            }
            // The last write of a job (its usage) is queued with its result: wait for it.
            try await stack.eventually("the jobs are counted") {
                try await stack.call("GET", "/v1/usage", headers: a).json["jobs"]?["total"] == 3
            }
            try await expectUsageMatchesResults()

            // A job delivered again is answered from its stored result: not counted twice.
            try await stack.submit(Self.job(ids[0], ["tenant": .string(owner)]))
            try await stack.eventually("the stored result is produced again", timeout: .seconds(30)) {
                stack.results.all.filter { $0.keyString == ids[0] }.count == 2
            }
            try await expectUsageMatchesResults()

            // Another tenant sees its own day only, whatever it asks for.
            for path in ["/v1/usage", "/v1/usage?tenant=\(owner)", "/v1/usage?date=\(UsageDay(unixSeconds: Date().timeIntervalSince1970))"] {
                let theirs = try await stack.call("GET", path, headers: b)
                #expect(theirs.status == 200)
                #expect(theirs.json["tenant"] == .string(stranger))
                #expect(theirs.json["jobs"]?["total"] == 0)
                #expect(theirs.json["cost_usd"] == 0)
                #expect(theirs.json["limits"]?["max_spend_usd_per_day"] == .null)
                #expect(!theirs.text.contains(owner))
            }
            #expect(try await stack.call("GET", "/v1/usage").status == 401)

            let text = String(decoding: worker.metrics.render(), as: UTF8.self)
            try await worker.stop()
            #expect(text.contains(#"sluice_worker_tenant_jobs_total{tenant="\#(owner)",status="succeeded"} 2"#), "\(text)")
            #expect(text.contains(#"sluice_worker_tenant_jobs_total{tenant="\#(owner)",status="failed"} 1"#))
            let tokens = mine.reduce(0) { $0 + $1.metrics.inputTokens }
            #expect(text.contains(#"sluice_worker_tenant_tokens_total{tenant="\#(owner)",kind="input"} \#(tokens)"#))
            #expect(text.contains(#"sluice_worker_tenant_cost_usd_total{tenant="\#(owner)"}"#))
            // A tenant the configuration does not name is one fixed label, never its own.
            #expect(text.contains(#"sluice_worker_tenant_jobs_total{tenant="_other",status="succeeded"} 1"#))
            #expect(!text.contains("unnamed-tenant"))
        }
    }

    @Test func aDayIsAskedForAsYYYYMMDDWithinTheDaysKept() async throws {
        try await TestStack.with(gateway: true, worker: false) { stack in
            let today = UsageDay(unixSeconds: Date().timeIntervalSince1970)
            for (date, fragment) in [("2026-02-30", "not a calendar day"), ("30/11/2026", "YYYY-MM-DD"),
                                     (today.adding(days: 1).description, "outside the days"),
                                     (today.adding(days: -8).description, "outside the days")] {
                let answer = try await stack.call("GET", "/v1/usage?date=\(date)")
                #expect(answer.status == 400, "\(date)")
                #expect(answer.json["error"]?["param"] == "date")
                #expect(answer.json["error"]?["code"] == "invalid_date")
                #expect(answer.json["error"]?["message"]?.stringValue?.contains(fragment) == true, "\(answer.text)")
            }
            let oldest = try await stack.call("GET", "/v1/usage?date=\(today.adding(days: -7))")
            #expect(oldest.status == 200)
            #expect(oldest.json["tenant"] == "default")
            #expect(oldest.json["jobs"]?["total"] == 0)
        }
    }

    /// The tenant's day as the worker recorded it in Redis.
    static func usage(of tenant: String, stack: TestStack) async throws -> TenantUsage {
        let key = RedisKeys.usage(tenant: tenant, day: UsageDay(unixSeconds: Date().timeIntervalSince1970))
        var flat: [String] = []
        try await stack.eventually("the job is counted") {
            flat = (try await stack.redis.execute(RedisCommand("HGETALL", key)).array ?? []).map { $0.string ?? "" }
            return !flat.isEmpty
        }
        let ttl = try await stack.redis.execute(RedisCommand("TTL", key)).int ?? -1
        #expect(ttl > 0 && ttl <= Int64(TenantUsage.ttlSeconds))
        return TenantUsage(fields: stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], flat[$0 + 1]) })
    }
}

enum TenantUsageFixture {
    static func response(input: Int, output: Int, cost: Double?) -> UnifiedResponse {
        UnifiedResponse(
            id: "c", created: 0, model: "m", choices: [], usage: nil, systemFingerprint: nil, sessionID: nil, chatInput: nil,
            chatOutput: nil, context: [], provider: "mock", timestamp: 0, parameters: [:],
            metrics: Metrics(inputTokens: input, outputTokens: output, totalTokens: input + output, costUSD: cost, latencyS: 1,
                             timeToFirstTokenS: nil, interTokenLatencyS: nil, tokensPerSecond: nil, queueWaitS: nil, attempts: 1,
                             usageSource: .provider, streamComplete: true),
            jobID: "j", status: .succeeded, error: nil, metadata: .null)
    }
}
