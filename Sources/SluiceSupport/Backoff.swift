/// Capped exponential backoff with jitter: `initial`, doubling each attempt up to
/// `maximum`, each delay multiplied by a random factor from `jitter`, so that many
/// processes that lost the same server do not all come back in the same millisecond.
///
/// The one backoff of the project: Redis reconnects (50 ms to 2 s, ±20 %), the worker's
/// provider retries (250 ms to 8 s, full jitter down to half) and its retries of a
/// produce the broker refused for now (200 ms to 5 s).
public struct Backoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    public let jitter: ClosedRange<Double>

    private var attempt = 0

    public init(initial: Duration, maximum: Duration, jitter: ClosedRange<Double> = 1...1) {
        precondition(initial > .zero && maximum >= initial, "backoff: 0 < initial <= maximum")
        precondition(jitter.lowerBound > 0, "backoff: jitter factors are positive")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
    }

    /// Redis reconnects: 50 ms doubling to 2 s, ±20 %.
    public static let reconnect = Backoff(initial: .milliseconds(50), maximum: .seconds(2), jitter: 0.8...1.2)

    /// The delay before retry number `attempt` (0 for the first), without jitter.
    public func ceiling(attempt: Int) -> Duration {
        // Doubling from `initial` reaches any cap within 64 steps; no overflow past it.
        let doublings = min(max(attempt, 0), 62)
        let scale = Double(1 << doublings)
        return min(initial * scale, maximum)
    }

    /// The delay before retry number `attempt` (0 for the first), with jitter.
    public func delay(attempt: Int) -> Duration {
        let base = ceiling(attempt: attempt)
        return jitter.lowerBound == jitter.upperBound ? base * jitter.lowerBound : base * Double.random(in: jitter)
    }

    /// The delay before the next attempt; each call doubles the following one.
    public mutating func nextDelay() -> Duration {
        defer { attempt += 1 }
        return delay(attempt: attempt)
    }

    /// After a success: the next failure waits `initial` again.
    public mutating func reset() {
        attempt = 0
    }
}
