import Foundation

/// Time on `ContinuousClock` as plain numbers, for deadlines kept in `Double`s and for
/// timestamps that are subtracted from one another (metrics, the bench's latencies).
///
/// The readings count from the machine's uptime at the first reading, so they are never
/// near zero (code that starts a "last time" at 0 keeps working) and only their
/// differences mean anything. They are of this process only: never compare them with
/// another process's, nor store them.
public enum MonotonicClock {
    private static let origin = (instant: ContinuousClock.now, uptime: Duration.seconds(ProcessInfo.processInfo.systemUptime))

    /// The time since the origin, as a `Duration`.
    public static var elapsed: Duration { origin.uptime + origin.instant.duration(to: .now) }

    /// Seconds.
    public static func now() -> Double {
        let (seconds, attoseconds) = elapsed.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// Nanoseconds.
    public static func nanoseconds() -> UInt64 {
        let (seconds, attoseconds) = elapsed.components
        return UInt64(max(0, seconds)) &* 1_000_000_000 &+ UInt64(max(0, attoseconds / 1_000_000_000))
    }
}
