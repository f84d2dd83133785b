import Foundation
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers

/// A requests-per-minute limit the mock provider enforces per API key, as real providers
/// do: a token bucket of `burst` requests refilled at `rpm / 60` a second (OpenAI enforces
/// its per-minute limits over shorter windows like this). Over it, the answer is a 429
/// with `retry-after` (whole seconds), `retry-after-ms`, and both OpenAI's
/// `x-ratelimit-*-requests` and Anthropic's `anthropic-ratelimit-requests-*` headers;
/// every answer under the limit carries the same limit headers unless
/// `headersOnSuccess` is off (a provider that tells its limit only when it is hit).
public struct MockRateLimit: Sendable, Hashable {
    public var rpm: Int
    /// Requests that may arrive at once; by default two seconds' worth (at least 2).
    public var burst: Int
    public var headersOnSuccess: Bool

    public init(rpm: Int, burst: Int? = nil, headersOnSuccess: Bool = true) {
        self.rpm = max(1, rpm)
        self.burst = max(1, burst ?? max(2, rpm / 30))
        self.headersOnSuccess = headersOnSuccess
    }
}

/// The buckets of a ``MockRateLimit``, one per API key.
final class MockRateLimiter: Sendable {
    struct Decision {
        var allowed: Bool
        var remaining: Int
        /// Seconds until a request would be allowed (0 when allowed).
        var retryAfter: Double
        /// Seconds until the bucket is full again.
        var reset: Double
    }

    let limit: MockRateLimit
    private let buckets = NIOLockedValueBox([String: (level: Double, at: Double)]())

    init(_ limit: MockRateLimit) { self.limit = limit }

    func take(key: String, now: Double = ProcessInfo.processInfo.systemUptime) -> Decision {
        let rate = Double(limit.rpm) / 60
        let capacity = Double(limit.burst)
        return buckets.withLockedValue { buckets in
            var (level, at) = buckets[key] ?? (capacity, now)
            level = min(capacity, level + (now - at) * rate)
            at = now
            defer { buckets[key] = (level, at) }
            if level >= 1 {
                level -= 1
                return Decision(allowed: true, remaining: Int(level), retryAfter: 0, reset: (capacity - level) / rate)
            }
            return Decision(allowed: false, remaining: 0, retryAfter: (1 - level) / rate, reset: (capacity - level) / rate)
        }
    }

    /// The caller's key, whichever header its wire format carries it in.
    static func key(_ request: Request) -> String {
        for name in ["authorization", "x-api-key", "api-key", "x-goog-api-key"] {
            if let field = HTTPField.Name(name), let value = request.headers[field], !value.isEmpty { return value }
        }
        return request.uri.queryParameters["key"].map(String.init) ?? ""
    }

    /// The limit headers of one answer.
    func headers(_ d: Decision, now: Date = Date()) -> [(HTTPField.Name, String)] {
        let reset = String(format: "%.3fs", d.reset)
        let resetAt = ISO8601DateFormatter().string(from: now.addingTimeInterval(d.reset.rounded(.up)))
        var out: [(HTTPField.Name, String)] = [
            (HTTPField.Name("x-ratelimit-limit-requests")!, String(limit.rpm)),
            (HTTPField.Name("x-ratelimit-remaining-requests")!, String(d.remaining)),
            (HTTPField.Name("x-ratelimit-reset-requests")!, reset),
            (HTTPField.Name("anthropic-ratelimit-requests-limit")!, String(limit.rpm)),
            (HTTPField.Name("anthropic-ratelimit-requests-remaining")!, String(d.remaining)),
            (HTTPField.Name("anthropic-ratelimit-requests-reset")!, resetAt),
        ]
        if !d.allowed {
            out.append((.retryAfter, String(Int(d.retryAfter.rounded(.up)))))
            out.append((HTTPField.Name("retry-after-ms")!, String(Int((d.retryAfter * 1000).rounded(.up)))))
        }
        return out
    }
}
