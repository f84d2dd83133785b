import Foundation
import HTTPTypes
import Hummingbird
import SluiceCore

/// `GET /v1/usage`: the caller's tenant's tokens, cost and finished jobs on one UTC day,
/// as the workers recorded them (`sluice:usage:{tenant}:{day}`), with its daily spend
/// limit and what is left of it. A tenant sees only its own.
extension Gateway {
    func addUsageRoutes(to router: Router<GatewayContext>) {
        router.get("/v1/usage") { request, _ in try await self.usage(request) }
    }

    func usage(_ request: Request) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        let now = Date().timeIntervalSince1970
        let today = UsageDay(unixSeconds: now)
        let day = try Gateway.usageDay(request.uri.queryParameters.get("date"), today: today)
        let fields: [(String, String)]
        do {
            fields = try await store.usage(tenant: tenant, day: day)
        } catch {
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        let usage = TenantUsage(fields: fields)
        return Response.json(Gateway.usageJSON(usage, tenant: tenant, day: day, limitUSD: config.quotas.spendLimitUSD(for: tenant)))
    }

    /// The day asked for: `date` as `YYYY-MM-DD`, from `TenantUsage.daysReadable` days
    /// ago to today; today when absent. Anything else is a 400 naming the problem.
    static func usageDay(_ date: String?, today: UsageDay) throws -> UsageDay {
        guard let date else { return today }
        let day: UsageDay
        do {
            day = try UsageDay(parsing: date)
        } catch let error as SluiceError {
            throw APIError.badRequest(error.message, param: "date", code: "invalid_date")
        }
        let oldest = today.adding(days: -TenantUsage.daysReadable)
        guard day >= oldest, day <= today else {
            throw APIError.badRequest(
                "date \(day) is outside the days whose usage is kept: give a UTC day from \(oldest) to \(today) (today)",
                param: "date", code: "invalid_date")
        }
        return day
    }

    /// `{object, tenant, date, prompt_tokens, completion_tokens, total_tokens, cost_usd,
    /// jobs: {succeeded, failed, cancelled, timed_out, total}, jobs_unpriced, limits:
    /// {max_spend_usd_per_day}, remaining: {spend_usd}, resets_at}`.
    static func usageJSON(_ usage: TenantUsage, tenant: String, day: UsageDay, limitUSD: Double?) -> JSONValue {
        var jobs: [String: JSONValue] = [:]
        for status in UnifiedResponse.Status.allCases { jobs[status.rawValue] = .number(Double(usage.jobs[status.rawValue] ?? 0)) }
        jobs["total"] = .number(Double(usage.jobs.values.reduce(0, +)))
        let remaining = limitUSD.map { SpendCheck(limitUSD: $0, spentMicroUSD: usage.costMicroUSD, day: day).remainingMicroUSD }
        return [
            "object": "usage",
            "tenant": .string(tenant),
            "date": .string(day.description),
            "prompt_tokens": .number(Double(usage.promptTokens)),
            "completion_tokens": .number(Double(usage.completionTokens)),
            "total_tokens": .number(Double(usage.promptTokens + usage.completionTokens)),
            "cost_usd": .number(MicroUSD.usd(usage.costMicroUSD)),
            "jobs": .object(jobs),
            "jobs_unpriced": .number(Double(usage.unpricedJobs)),
            "limits": ["max_spend_usd_per_day": limitUSD.map(JSONValue.number) ?? .null],
            "remaining": ["spend_usd": remaining.map { .number(MicroUSD.usd($0)) } ?? .null],
            "resets_at": .string("\(day.adding(days: 1))T00:00:00Z"),
        ]
    }
}
