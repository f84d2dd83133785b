import Foundation
import SluiceHTTPClient

/// What a provider's response said about its rate limits: OpenAI's `x-ratelimit-*`,
/// Anthropic's `anthropic-ratelimit-*`, and `Retry-After` (or `retry-after-ms`). Times
/// are seconds from when the response arrived; every field is nil when not given.
public struct RateLimitHeaders: Sendable, Hashable {
    public var requestLimit: Int?
    public var requestsRemaining: Int?
    /// Until the request budget is whole again.
    public var requestsReset: Double?
    public var tokenLimit: Int?
    public var tokensRemaining: Int?
    public var tokensReset: Double?
    /// How long the provider asked to wait before the next request.
    public var retryAfter: Double?

    public init(
        requestLimit: Int? = nil, requestsRemaining: Int? = nil, requestsReset: Double? = nil,
        tokenLimit: Int? = nil, tokensRemaining: Int? = nil, tokensReset: Double? = nil, retryAfter: Double? = nil
    ) {
        self.requestLimit = requestLimit
        self.requestsRemaining = requestsRemaining
        self.requestsReset = requestsReset
        self.tokenLimit = tokenLimit
        self.tokensRemaining = tokensRemaining
        self.tokensReset = tokensReset
        self.retryAfter = retryAfter
    }

    /// Nothing was said.
    public var isEmpty: Bool { self == RateLimitHeaders() }

    /// Reads the headers of one response; `now` is for Anthropic's absolute reset times.
    public init(_ headers: HTTPHeaders, now: Date = Date()) {
        func int(_ name: String) -> Int? {
            headers[name].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }.map { max(0, $0) }
        }
        self.init()
        if let ms = headers["retry-after-ms"].flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }), ms.isFinite, ms >= 0 {
            retryAfter = min(ms / 1000, 86_400)
        } else {
            retryAfter = RateLimitHeaders.retryAfter(headers["retry-after"], now: now)
        }
        // OpenAI (and the OpenAI-compatible servers that copy it).
        requestLimit = int("x-ratelimit-limit-requests")
        requestsRemaining = int("x-ratelimit-remaining-requests")
        requestsReset = headers["x-ratelimit-reset-requests"].flatMap(RateLimitHeaders.duration)
        tokenLimit = int("x-ratelimit-limit-tokens")
        tokensRemaining = int("x-ratelimit-remaining-tokens")
        tokensReset = headers["x-ratelimit-reset-tokens"].flatMap(RateLimitHeaders.duration)
        // Anthropic: absolute RFC 3339 reset times.
        requestLimit = requestLimit ?? int("anthropic-ratelimit-requests-limit")
        requestsRemaining = requestsRemaining ?? int("anthropic-ratelimit-requests-remaining")
        requestsReset = requestsReset ?? headers["anthropic-ratelimit-requests-reset"].flatMap { RateLimitHeaders.until($0, now: now) }
        tokenLimit = tokenLimit ?? int("anthropic-ratelimit-tokens-limit")
        tokensRemaining = tokensRemaining ?? int("anthropic-ratelimit-tokens-remaining")
        tokensReset = tokensReset ?? headers["anthropic-ratelimit-tokens-reset"].flatMap { RateLimitHeaders.until($0, now: now) }
    }

    /// OpenAI's reset durations: `1s`, `6m0s`, `20ms`, `1h2m3.5s`, or plain seconds.
    public static func duration(_ text: String) -> Double? {
        let s = text.trimmingCharacters(in: .whitespaces)
        if s.isEmpty { return nil }
        if let seconds = Double(s) { return seconds.isFinite && seconds >= 0 ? seconds : nil }
        var total = 0.0
        var number = ""
        let chars = Array(s)
        var i = 0
        var sawUnit = false
        while i < chars.count {
            let c = chars[i]
            if c.isNumber || c == "." {
                number.append(c)
                i += 1
                continue
            }
            guard let value = Double(number) else { return nil }
            number = ""
            if c == "m", i + 1 < chars.count, chars[i + 1] == "s" {
                total += value / 1000
                i += 2
            } else {
                switch c {
                case "h": total += value * 3600
                case "m": total += value * 60
                case "s": total += value
                default: return nil
                }
                i += 1
            }
            sawUnit = true
        }
        guard number.isEmpty, sawUnit, total.isFinite else { return nil }
        return total
    }

    /// Seconds from `now` until an RFC 3339 time (0 if it has passed).
    static func until(_ text: String, now: Date) -> Double? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let date = f.date(from: trimmed) ?? ISO8601DateFormatter().date(from: trimmed) else { return nil }
        return max(0, date.timeIntervalSince(now))
    }

    /// `Retry-After` as seconds or an HTTP date.
    /// At most a day: a provider's header is not a reason to wait longer.
    static func retryAfter(_ value: String?, now: Date) -> Double? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Double(value) { return seconds.isFinite ? min(max(0, seconds), 86_400) : nil }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = f.date(from: value) else { return nil }
        return min(max(0, date.timeIntervalSince(now)), 86_400)
    }
}
