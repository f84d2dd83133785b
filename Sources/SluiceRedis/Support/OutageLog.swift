import Logging

/// Logs the health of one Redis connection as transitions, never per command: one warning
/// when it goes down (or cannot come up), one info line when it is back, debug lines for
/// each failed attempt in between.
struct OutageLog {
    private let logger: Logger
    private let what: String
    private var downSince: ContinuousClock.Instant?
    private var failedAttempts = 0

    init(logger: Logger, what: String) {
        self.logger = logger
        self.what = what
    }

    var isDown: Bool { downSince != nil }

    mutating func lost(_ error: RedisError) {
        guard downSince == nil else { return }
        downSince = .now
        failedAttempts = 0
        logger.warning("\(what) lost its connection to Redis; reconnecting with backoff", metadata: [
            "error": "\(error.message)",
        ])
    }

    mutating func connectFailed(_ error: RedisError) {
        failedAttempts += 1
        if downSince == nil {
            downSince = .now
            logger.warning("\(what) cannot connect to Redis; retrying with backoff", metadata: [
                "error": "\(error.message)",
            ])
        } else {
            logger.debug("\(what) reconnect attempt failed", metadata: [
                "error": "\(error.message)", "attempt": "\(failedAttempts)",
            ])
        }
    }

    mutating func connected() {
        guard let downSince else {
            logger.debug("\(what) connected to Redis")
            return
        }
        self.downSince = nil
        logger.info("\(what) reconnected to Redis", metadata: [
            "down_for": "\(ContinuousClock.now - downSince)", "failed_attempts": "\(failedAttempts)",
        ])
    }
}
