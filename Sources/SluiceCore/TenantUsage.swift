/// A day of usage accounting: one UTC calendar day, written `YYYY-MM-DD`. Spend limits
/// reset at 00:00 UTC; the worker records a job under the day it finished.
///
/// Pure arithmetic on days since 1970-01-01 (the proleptic Gregorian calendar), so
/// the key a worker writes and the one a gateway reads agree without a calendar object.
public struct UsageDay: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Days since 1970-01-01.
    public let daysSinceEpoch: Int64

    public init(daysSinceEpoch: Int64) {
        self.daysSinceEpoch = daysSinceEpoch
    }

    /// The UTC day holding `unixSeconds` (seconds since the epoch; not finite counts as 0).
    public init(unixSeconds: Double) {
        let seconds = unixSeconds.isFinite ? (unixSeconds / 86_400).rounded(.down) : 0
        daysSinceEpoch = Int64(saturating: seconds)
    }

    /// Reads `YYYY-MM-DD` (a real calendar date, years 1970 to 9999); throws a
    /// `SluiceError` naming what is wrong.
    public init(parsing text: String) throws {
        let bytes = Array(text.utf8)
        let shape = bytes.count == 10 && bytes[4] == UInt8(ascii: "-") && bytes[7] == UInt8(ascii: "-")
            && bytes.enumerated().allSatisfy { $0.offset == 4 || $0.offset == 7 || (0x30...0x39).contains($0.element) }
        guard shape else {
            throw SluiceError(.invalidRequest, "date \"\(text.prefix(40))\" is not a day as YYYY-MM-DD (e.g. 2026-01-31)",
                              context: ["field": "date"])
        }
        func number(_ range: Range<Int>) -> Int64 { range.reduce(0) { $0 * 10 + Int64(bytes[$1] - 0x30) } }
        let (year, month, day) = (number(0..<4), number(5..<7), number(8..<10))
        guard year >= 1970, (1...12).contains(month), day >= 1, day <= UsageDay.daysIn(month: month, year: year) else {
            throw SluiceError(.invalidRequest, "date \"\(text)\" is not a calendar day (from 1970-01-01 on)", context: ["field": "date"])
        }
        daysSinceEpoch = UsageDay.days(year: year, month: month, day: day)
    }

    /// `YYYY-MM-DD`.
    public var description: String {
        let (y, m, d) = civil
        func pad(_ n: Int64, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
    }

    /// 00:00 UTC of the day after, in seconds since the epoch: when a spend limit resets.
    public var endUnixSeconds: Double { Double(daysSinceEpoch + 1) * 86_400 }

    /// Whole seconds from `unixSeconds` until this day ends, at least 1 (a `Retry-After`).
    public func secondsUntilEnd(from unixSeconds: Double) -> Int {
        let left = (endUnixSeconds - unixSeconds).rounded(.up)
        return left.isFinite ? max(1, Int(saturating: left)) : 1
    }

    public func adding(days: Int64) -> UsageDay { UsageDay(daysSinceEpoch: daysSinceEpoch + days) }

    public static func < (a: UsageDay, b: UsageDay) -> Bool { a.daysSinceEpoch < b.daysSinceEpoch }

    /// Year, month and day (Howard Hinnant's `civil_from_days`).
    var civil: (year: Int64, month: Int64, day: Int64) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Days since the epoch of a date (`days_from_civil`).
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}

/// Money in whole micro-USD (1e-6 USD), so that a day's spend adds up exactly in Redis
/// (`HINCRBY`) however many jobs it has.
public enum MicroUSD {
    /// `usd` rounded to the nearest micro-USD; 0 for nil, negative or not finite.
    public static func from(usd: Double?) -> Int64 {
        guard let usd, usd.isFinite, usd > 0 else { return 0 }
        return Int64(saturating: (usd * 1_000_000).rounded())
    }

    public static func usd(_ micro: Int64) -> Double { Double(micro) / 1_000_000 }
}

/// One tenant's usage on one UTC day, as the worker records it in Redis
/// (`sluice:usage:{tenant}:{YYYY-MM-DD}`, a hash of counters) and `GET /v1/usage` reads it.
public struct TenantUsage: Sendable, Equatable {
    public var promptTokens: Int64 = 0
    public var completionTokens: Int64 = 0
    public var costMicroUSD: Int64 = 0
    /// Finished jobs by final status (`succeeded`, `failed`, `cancelled`, `timed_out`).
    public var jobs: [String: Int64] = [:]
    /// Finished jobs on a model with no price: their cost is not in `costMicroUSD`.
    public var unpricedJobs: Int64 = 0

    public init() {}

    /// How long a day's record is kept: its day, and a week after.
    public static let ttlSeconds = 8 * 86_400
    /// The oldest day `GET /v1/usage` answers for, counted back from today.
    public static let daysReadable: Int64 = 7

    /// The hash fields.
    public enum Field {
        public static let promptTokens = "prompt_tokens"
        public static let completionTokens = "completion_tokens"
        public static let costMicroUSD = "cost_micro_usd"
        public static let unpricedJobs = "jobs_unpriced"
        public static func jobs(_ status: String) -> String { "jobs_\(status)" }
    }

    /// What one finished job adds: `(field, increment)` pairs, zeros left out, the job's
    /// status count always there.
    public static func increments(of response: UnifiedResponse) -> [(field: String, by: Int64)] {
        let m = response.metrics
        var out: [(field: String, by: Int64)] = [(Field.jobs(response.status.rawValue), 1)]
        if m.inputTokens > 0 { out.append((Field.promptTokens, Int64(m.inputTokens))) }
        if m.outputTokens > 0 { out.append((Field.completionTokens, Int64(m.outputTokens))) }
        let cost = MicroUSD.from(usd: m.costUSD)
        if cost > 0 { out.append((Field.costMicroUSD, cost)) }
        // Tokens with no price: spend limits cannot see them, so the record says so.
        if m.costUSD == nil && m.totalTokens > 0 { out.append((Field.unpricedJobs, 1)) }
        return out
    }

    /// Reads the hash (`HGETALL`'s field/value pairs); unknown fields are ignored.
    public init(fields: [(String, String)]) {
        for (name, value) in fields {
            let n = Int64(value) ?? 0
            switch name {
            case Field.promptTokens: promptTokens = n
            case Field.completionTokens: completionTokens = n
            case Field.costMicroUSD: costMicroUSD = n
            case Field.unpricedJobs: unpricedJobs = n
            default:
                if name.hasPrefix("jobs_") { jobs[String(name.dropFirst(5))] = n }
            }
        }
    }

    /// Adds another's counters (what `HINCRBY` does to the hash).
    public mutating func add(_ increments: [(field: String, by: Int64)]) {
        var fields: [String: Int64] = [:]
        for (f, n) in increments { fields[f, default: 0] += n }
        for (name, n) in fields {
            switch name {
            case Field.promptTokens: promptTokens += n
            case Field.completionTokens: completionTokens += n
            case Field.costMicroUSD: costMicroUSD += n
            case Field.unpricedJobs: unpricedJobs += n
            default: if name.hasPrefix("jobs_") { jobs[String(name.dropFirst(5)), default: 0] += n }
            }
        }
    }

    /// `EVAL recordScript 2 meta usage ttl [field increment]...`: adds a finished job's
    /// counters to its tenant's day once per job. The job's meta remembers that it was
    /// counted (field `usage_counted`), so a second run of the same job (a run taken over
    /// after its lease lapsed) adds nothing; a result replayed from Redis never gets here.
    public static let recordScript = """
        if redis.call('HSETNX', KEYS[1], 'usage_counted', '1') == 0 then return 0 end
        for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
        redis.call('EXPIRE', KEYS[2], ARGV[1])
        return 1
        """

    /// The arguments of `EVAL` recording `response` for `tenant` on `day`.
    public static func recordArguments(jobID: String, tenant: String, day: UsageDay, response: UnifiedResponse) -> [String] {
        var args = ["EVAL", recordScript, "2", RedisKeys.meta(jobID), RedisKeys.usage(tenant: tenant, day: day), String(ttlSeconds)]
        for (field, by) in increments(of: response) { args += [field, String(by)] }
        return args
    }
}

/// A tenant's spend against its daily limit (`quotas`).
public struct SpendCheck: Sendable, Equatable {
    /// The limit in USD a UTC day.
    public var limitUSD: Double
    /// What the tenant's finished jobs cost so far today, in micro-USD.
    public var spentMicroUSD: Int64
    public var day: UsageDay

    public init(limitUSD: Double, spentMicroUSD: Int64, day: UsageDay) {
        self.limitUSD = limitUSD
        self.spentMicroUSD = spentMicroUSD
        self.day = day
    }

    /// At or over the limit: no new job starts until the day ends.
    public var isExhausted: Bool { spentMicroUSD >= MicroUSD.from(usd: limitUSD) }

    /// What is left today, in micro-USD (0 when exhausted).
    public var remainingMicroUSD: Int64 { max(0, MicroUSD.from(usd: limitUSD) - spentMicroUSD) }

    /// Says what was reached, until when, and what to do. `who` is how the message
    /// names the tenant ("this API key's tenant", "tenant \"acme\"").
    public func message(who: String) -> String {
        "\(who) has spent \(SpendCheck.dollars(MicroUSD.usd(spentMicroUSD))) on UTC day \(day), its limit of "
            + "\(SpendCheck.dollars(limitUSD)) a day (quotas.max_spend_usd_per_day); no job runs for it until 00:00 UTC. "
            + "Wait for the next day, or ask an operator to raise the limit"
    }

    /// `$1.25`, `$0.000123`: to the cent, or to the micro-dollar below a cent.
    static func dollars(_ usd: Double) -> String {
        let micro = MicroUSD.from(usd: usd)
        if micro % 10_000 == 0 || micro >= 1_000_000 {
            let cents = (Double(micro) / 10_000).rounded()
            let whole = Int64(saturating: cents) / 100
            let rest = Int64(saturating: cents) % 100
            return "$\(whole).\(rest < 10 ? "0" : "")\(rest)"
        }
        let whole = micro / 1_000_000
        let fraction = String(micro % 1_000_000)
        return "$\(whole)." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}

extension RedisKeys {
    /// A tenant's usage on one UTC day: a hash of counters (`TenantUsage`), kept
    /// `TenantUsage.ttlSeconds` after its last write.
    public static func usage(tenant: String, day: UsageDay) -> String { "sluice:usage:\(tenant):\(day)" }
}
