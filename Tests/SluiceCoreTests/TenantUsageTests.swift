import Foundation
import SluiceCore
import Testing

/// The UTC day of usage accounting, money in micro-USD, what a finished job adds to its
/// tenant's day, and the spend limits of the configuration.
struct TenantUsageTests {
    // MARK: Days

    @Test func theDayOfATimeIsItsUTCDateAsFoundationWritesIt() throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        // Every 7th day from 1970 to 2100, at a time of day that moves with it.
        for days in stride(from: Int64(0), to: 47_500, by: 7) {
            let seconds = Double(days) * 86_400 + Double(days % 86_400)
            let day = UsageDay(unixSeconds: seconds)
            #expect(day.daysSinceEpoch == days)
            let expected = formatter.string(from: Date(timeIntervalSince1970: seconds))
            #expect(day.description == expected)
            #expect(try UsageDay(parsing: expected) == day)
        }
    }

    @Test func aDayEndsAtUTCMidnightAndRetryAfterCountsTheSecondsToIt() {
        // 2026-11-30T23:59:30Z and 2026-11-30T00:00:00Z.
        let lateEvening = 1_796_083_170.0
        let day = UsageDay(unixSeconds: lateEvening)
        #expect(day.description == "2026-11-30")
        #expect(day.secondsUntilEnd(from: lateEvening) == 30)
        #expect(day.secondsUntilEnd(from: lateEvening + 29.2) == 1)
        // Midnight itself belongs to the new day, a whole day before the next reset.
        let midnight = 1_796_083_200.0
        #expect(UsageDay(unixSeconds: midnight).description == "2026-12-01")
        #expect(UsageDay(unixSeconds: midnight).secondsUntilEnd(from: midnight) == 86_400)
        #expect(UsageDay(unixSeconds: midnight - 0.001).description == "2026-11-30")
        // A clock that is past the day already still asks for a retry, not for 0 s.
        #expect(day.secondsUntilEnd(from: midnight + 10) == 1)
    }

    @Test func onlyRealCalendarDaysAsYYYYMMDDAreTaken() {
        for good in ["2024-02-29", "2000-02-29", "1970-01-01", "2026-12-31"] {
            #expect((try? UsageDay(parsing: good))?.description == good)
        }
        for bad in ["2023-02-29", "1900-02-29", "2026-13-01", "2026-00-10", "2026-04-31", "2026-1-01", "26-01-01",
                    "2026/01/01", "2026-01-01T00:00:00Z", "", "yesterday", "1969-12-31", "２０２６-01-01", "2026-01-0x"] {
            #expect(throws: SluiceError.self, "\(bad)") { try UsageDay(parsing: bad) }
        }
        let error = #expect(throws: SluiceError.self) { try UsageDay(parsing: "2026-02-30") }
        #expect(error?.message.contains("2026-02-30") == true)
    }

    // MARK: Money and counters

    @Test func costsAreWholeMicroDollarsAndAddUpExactly() {
        #expect(MicroUSD.from(usd: 0.0000015) == 2)
        #expect(MicroUSD.from(usd: 1.25) == 1_250_000)
        #expect(MicroUSD.from(usd: nil) == 0)
        #expect(MicroUSD.from(usd: -3) == 0)
        #expect(MicroUSD.from(usd: .nan) == 0)
        #expect(MicroUSD.from(usd: .infinity) == 0)
        #expect(MicroUSD.from(usd: 1e300) == Int64.max)
        // A thousand jobs of $0.1 each: $100 exactly, where adding doubles drifts.
        let micro = (0..<1000).reduce(Int64(0)) { total, _ in total + MicroUSD.from(usd: 0.1) }
        #expect(micro == 100_000_000)
        #expect(MicroUSD.usd(micro) == 100)
    }

    static func response(status: UnifiedResponse.Status, input: Int, output: Int, cost: Double?) -> UnifiedResponse {
        UnifiedResponse(
            id: "c", created: 0, model: "m", choices: [], usage: nil, systemFingerprint: nil, sessionID: nil, chatInput: nil,
            chatOutput: nil, context: [], provider: "p", timestamp: 0, parameters: [:],
            metrics: Metrics(inputTokens: input, outputTokens: output, totalTokens: input + output, costUSD: cost, latencyS: 1,
                             timeToFirstTokenS: nil, interTokenLatencyS: nil, tokensPerSecond: nil, queueWaitS: nil, attempts: 1,
                             usageSource: .provider, streamComplete: status == .succeeded),
            jobID: "j", status: status, error: nil, metadata: .null)
    }

    @Test func aFinishedJobAddsItsTokensCostAndStatusToItsDay() {
        var day = TenantUsage()
        day.add(TenantUsage.increments(of: Self.response(status: .succeeded, input: 10, output: 20, cost: 0.00005)))
        day.add(TenantUsage.increments(of: Self.response(status: .succeeded, input: 1, output: 2, cost: 0.000005)))
        // A cancelled stream's tokens were produced and billed: they count.
        day.add(TenantUsage.increments(of: Self.response(status: .cancelled, input: 5, output: 3, cost: 0.000011)))
        // Refused before any call: a job, no tokens, no cost.
        day.add(TenantUsage.increments(of: Self.response(status: .failed, input: 0, output: 0, cost: nil)))
        // A model with no price: tokens, no cost, and said so.
        day.add(TenantUsage.increments(of: Self.response(status: .timedOut, input: 4, output: 4, cost: nil)))
        #expect(day.promptTokens == 20)
        #expect(day.completionTokens == 29)
        #expect(day.costMicroUSD == 50 + 5 + 11)
        #expect(day.jobs == ["succeeded": 2, "cancelled": 1, "failed": 1, "timed_out": 1])
        #expect(day.unpricedJobs == 1)

        // What Redis holds after those HINCRBYs reads back the same.
        let fields = [("prompt_tokens", "20"), ("completion_tokens", "29"), ("cost_micro_usd", "66"), ("jobs_succeeded", "2"),
                      ("jobs_cancelled", "1"), ("jobs_failed", "1"), ("jobs_timed_out", "1"), ("jobs_unpriced", "1"),
                      ("something_else", "7")]
        #expect(TenantUsage(fields: fields) == day)
    }

    @Test func theRecordScriptCountsAJobOnceOnItsTenantsDay() {
        let day = try! UsageDay(parsing: "2026-11-30")
        let args = TenantUsage.recordArguments(
            jobID: "job-1", tenant: "acme", day: day, response: Self.response(status: .succeeded, input: 3, output: 4, cost: 0.000007))
        #expect(args[0] == "EVAL")
        #expect(args[2] == "2")
        #expect(args[3] == RedisKeys.meta("job-1"))
        #expect(args[4] == "sluice:usage:acme:2026-11-30")
        #expect(args[5] == String(TenantUsage.ttlSeconds))
        #expect(Array(args[6...]) == ["jobs_succeeded", "1", "prompt_tokens", "3", "completion_tokens", "4", "cost_micro_usd", "7"])
        #expect(TenantUsage.recordScript.contains("HSETNX"))
    }

    @Test func aSpendCheckSaysWhatWasReachedAndWhatToDo() {
        let day = try! UsageDay(parsing: "2026-11-30")
        let under = SpendCheck(limitUSD: 5, spentMicroUSD: 4_999_999, day: day)
        #expect(!under.isExhausted)
        #expect(under.remainingMicroUSD == 1)
        let at = SpendCheck(limitUSD: 5, spentMicroUSD: 5_000_000, day: day)
        #expect(at.isExhausted)
        #expect(at.remainingMicroUSD == 0)
        #expect(SpendCheck(limitUSD: 0, spentMicroUSD: 0, day: day).isExhausted)
        let message = SpendCheck(limitUSD: 5, spentMicroUSD: 5_012_000, day: day).message(who: "this API key's tenant")
        #expect(message.contains("$5.01"))
        #expect(message.contains("$5.00 a day"))
        #expect(message.contains("quotas.max_spend_usd_per_day"))
        #expect(message.contains("2026-11-30"))
        #expect(message.contains("00:00 UTC"))
        #expect(SpendCheck(limitUSD: 0.00002, spentMicroUSD: 25, day: day).message(who: "t").contains("$0.000025"))
    }

    // MARK: Configuration

    @Test func aTenantsLimitIsItsOwnOrElseTheDefaultAndNullLiftsIt() throws {
        let config = try SluiceConfig.parse(yaml: """
            quotas:
              max_spend_usd_per_day: 10
              tenants:
                free: { max_spend_usd_per_day: 0.5 }
                internal: { max_spend_usd_per_day: null }
                listed: {}
            """)
        #expect(config.quotas.spendLimitUSD(for: "free") == 0.5)
        #expect(config.quotas.spendLimitUSD(for: "internal") == nil)
        #expect(config.quotas.spendLimitUSD(for: "listed") == 10)
        #expect(config.quotas.spendLimitUSD(for: "anyone") == 10)
        #expect(config.namedTenants == ["free", "internal", "listed", "default"])
        #expect(try SluiceConfig.parse(yaml: "").quotas.spendLimitUSD(for: "default") == nil)

        // Written out (as `sluice dev` writes its config) and read back, the same limits.
        let again = try SluiceConfig.parse(yaml: String(decoding: JSON.encode(config), as: UTF8.self))
        for tenant in ["free", "internal", "listed", "anyone"] {
            #expect(again.quotas.spendLimitUSD(for: tenant) == config.quotas.spendLimitUSD(for: tenant))
        }
    }

    @Test func aLimitMustBeANumberOfDollarsFromZero() {
        for yaml in ["quotas: { max_spend_usd_per_day: -1 }", "quotas: { max_spend_usd_per_day: .nan }",
                     "quotas: { tenants: { a: { max_spend_usd_per_day: -0.01 } } }", "quotas: { max_spend_usd_per_day: 1e12 }"] {
            let error = #expect(throws: SluiceError.self, "\(yaml)") { try SluiceConfig.parse(yaml: yaml) }
            #expect(error?.message.contains("max_spend_usd_per_day") == true)
        }
        #expect(throws: SluiceError.self) { try SluiceConfig.parse(yaml: "quotas: { tenants: { \"\": {} } }") }
    }
}
