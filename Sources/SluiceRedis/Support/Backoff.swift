/// Capped exponential backoff with jitter, for reconnect attempts.
///
/// 50 ms, 100 ms, 200 ms, … up to 2 s, each randomised by ±20 % so that many processes
/// that lost the same Redis do not all come back in the same millisecond.
struct Backoff {
    static let initial: Duration = .milliseconds(50)
    static let maximum: Duration = .seconds(2)

    private var next: Duration = Backoff.initial

    /// The delay before the next attempt; each call doubles the following one.
    mutating func nextDelay() -> Duration {
        let delay = next
        next = min(next * 2, Backoff.maximum)
        return delay * Double.random(in: 0.8...1.2)
    }

    mutating func reset() {
        next = Backoff.initial
    }
}
