import Logging
import Synchronization

/// Collapses an error that repeats into a few log lines: the first occurrence of a key is
/// logged, later ones are counted, and at most one summary per `interval` says how many
/// there were. A broker that is away makes librdkafka, and the code retrying around it,
/// report the same failure many times a second; the log should say it once.
public final class LogThrottle: Sendable {
    public enum Verdict: Equatable, Sendable {
        /// The first occurrence (or the first after a quiet `interval`): log it.
        case first
        /// Log a summary: `count` occurrences since the last line, this one included.
        case summary(count: Int)
        /// Counted, not logged.
        case suppressed
    }

    private struct Entry {
        var lastLogged: ContinuousClock.Instant
        var unlogged: Int
    }

    public let interval: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let entries = Mutex<[String: Entry]>([:])

    public init(interval: Duration = .seconds(30), now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.interval = interval
        self.now = now
    }

    public func admit(_ key: String) -> Verdict {
        let t = now()
        return entries.withLock { entries in
            guard var e = entries[key] else {
                entries[key] = Entry(lastLogged: t, unlogged: 0)
                return .first
            }
            defer { entries[key] = e }
            guard t - e.lastLogged >= interval else {
                e.unlogged += 1
                return .suppressed
            }
            e.lastLogged = t
            let count = e.unlogged + 1
            e.unlogged = 0
            return count == 1 ? .first : .summary(count: count)
        }
    }

    /// Forgets `key`: its next occurrence is logged as a first one.
    public func reset(_ key: String) {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }
}

/// Whether a client reaches its brokers, as librdkafka's errors and the client's own
/// checks tell it. An outage is logged in one line when it starts, a summary at most
/// every `interval` while it lasts, and one line when the brokers answer again.
final class BrokerOutage: Sendable {
    enum Report: Equatable {
        case started(String)
        case ongoing(seconds: Int, errors: Int, last: String)
        case ended(seconds: Int, errors: Int)
    }

    private struct Down {
        var since: ContinuousClock.Instant
        var lastReport: ContinuousClock.Instant
        var lastProbe: ContinuousClock.Instant
        var errors: Int
        var unreported: Int
        var lastError: String
    }

    let interval: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let down = Mutex<Down?>(nil)
    /// Mirrors `down != nil`, so the hot paths (every delivery, every message) need no lock.
    private let isDownFlag = Atomic<Bool>(false)

    init(interval: Duration = .seconds(30), now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.interval = interval
        self.now = now
    }

    var isDown: Bool { isDownFlag.load(ordering: .relaxed) }

    /// A connection failed; returns what to log, if anything.
    func failed(_ text: String) -> Report? {
        let t = now()
        return down.withLock { d -> Report? in
            guard var state = d else {
                d = Down(since: t, lastReport: t, lastProbe: t, errors: 1, unreported: 0, lastError: text)
                isDownFlag.store(true, ordering: .relaxed)
                return .started(text)
            }
            defer { d = state }
            state.errors += 1
            state.unreported += 1
            state.lastError = text
            guard t - state.lastReport >= interval else { return nil }
            state.lastReport = t
            let report = Report.ongoing(seconds: Self.seconds(t - state.since), errors: state.unreported, last: text)
            state.unreported = 0
            return report
        }
    }

    /// A broker answered; returns the line that ends an outage, if there was one.
    func answered() -> Report? {
        guard isDown else { return nil }
        let t = now()
        return down.withLock { d -> Report? in
            guard let state = d else { return nil }
            d = nil
            isDownFlag.store(false, ordering: .relaxed)
            return .ended(seconds: Self.seconds(t - state.since), errors: state.errors)
        }
    }

    /// Whether it is time to ask the brokers whether they are back (at most once per
    /// `every`, and only during an outage).
    func probeDue(every: Duration = .seconds(1)) -> Bool {
        guard isDown else { return false }
        let t = now()
        return down.withLock { d in
            guard var state = d, t - state.lastProbe >= every else { return false }
            state.lastProbe = t
            d = state
            return true
        }
    }

    func log(_ report: Report, to logger: Logger) {
        switch report {
        case .started(let text):
            logger.warning("Kafka brokers unreachable: \(text); retrying, reporting at most every \(Self.seconds(interval)) s until they answer")
        case .ongoing(let seconds, let errors, let last):
            logger.warning("Kafka brokers still unreachable after \(seconds) s (\(errors) errors since the last report): \(last)")
        case .ended(let seconds, let errors):
            // At the outage's own level, so whoever saw it start sees it end.
            logger.warning("Kafka brokers answer again after \(seconds) s (\(errors) connection errors in between)")
        }
    }

    private static func seconds(_ d: Duration) -> Int { Int(d.components.seconds) }
}
