import Foundation

enum WallClock {
    /// Seconds since the epoch.
    static func now() -> Double { Date().timeIntervalSince1970 }
}
