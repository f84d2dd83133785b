import SluiceRedis
import SluiceSupport
import Synchronization

/// Renews every run claim of the worker from one task, rather than a task per job.
///
/// A claim is renewed once it is `RunClaim.renewEvery` old and then every period after
/// (looked at once a `tick`), all the claims due in one pipelined round trip. A job
/// shorter than the period costs a registration and nothing in Redis. A claim found
/// taken over (its lease lapsed and another run holds the job) calls its `onLost`.
///
/// The release of a claim never overtakes a renew of it: a claim ended while its renew
/// is in flight is released by the renewer once that renew has answered (a renew
/// landing after the release would take the claim again for a lease).
final class ClaimRenewer: Sendable {
    struct Token: Hashable, Sendable {
        fileprivate let id: UInt64
    }

    private struct Entry {
        let jobID: String
        let run: String
        /// When it is next renewed (monotonic seconds).
        var due: Double
        let onLost: @Sendable () -> Void
        /// Part of the renew in flight.
        var renewing = false
        /// Ended while renewing: release it once that renew answers.
        var releaseAfterRenew = false
    }

    private struct State {
        var entries: [UInt64: Entry] = [:]
        var nextID: UInt64 = 0
    }

    static let tick: Duration = .seconds(1)
    /// `RunClaim.renewEvery` in seconds.
    static let period = Double(RunClaim.renewEvery.wholeMilliseconds) / 1000

    private let redis: RedisConnection
    private let state = Mutex(State())

    init(redis: RedisConnection) {
        self.redis = redis
    }

    /// Starts renewing the claim of `run` on `jobID`.
    func register(jobID: String, run: String, onLost: @escaping @Sendable () -> Void) -> Token {
        let due = MonotonicClock.now() + Self.period
        return state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            s.entries[id] = Entry(jobID: jobID, run: run, due: due, onLost: onLost)
            return Token(id: id)
        }
    }

    /// Stops renewing the claim; with `release`, releases it (`RunClaim.release`), after
    /// any renew of it still in flight.
    func end(_ token: Token, release: Bool) {
        let releaseNow = state.withLock { s -> Entry? in
            guard let entry = s.entries[token.id] else { return nil }
            if entry.renewing {
                s.entries[token.id]?.releaseAfterRenew = release
                if !release { s.entries[token.id] = nil }
                return nil
            }
            s.entries[token.id] = nil
            return release ? entry : nil
        }
        if let entry = releaseNow { RunClaim.release(jobID: entry.jobID, run: entry.run, redis: redis) }
    }

    /// Renews what is due, once a tick, until cancelled.
    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.tick)
            if Task.isCancelled { return }
            await renewDue(now: MonotonicClock.now())
        }
    }

    /// One pipelined round trip for every claim due at `now`.
    func renewDue(now: Double) async {
        guard let renewal = takeDue(now: now) else { return }
        // Redis away: no answer, and every claim is kept (nobody else can claim either).
        finish(renewal, replies: try? await redis.execute(renewal.commands))
    }

    /// The claims due at `now`, marked as being renewed.
    struct Renewal: Sendable {
        fileprivate let due: [(id: UInt64, jobID: String, run: String)]
        var commands: [RedisCommand] { due.map { RunClaim.renewCommand(jobID: $0.jobID, run: $0.run) } }
    }

    func takeDue(now: Double) -> Renewal? {
        let due = state.withLock { s -> [(id: UInt64, jobID: String, run: String)] in
            var due: [(id: UInt64, jobID: String, run: String)] = []
            for (id, entry) in s.entries where entry.due <= now && !entry.renewing {
                s.entries[id]?.renewing = true
                due.append((id, entry.jobID, entry.run))
            }
            return due
        }
        return due.isEmpty ? nil : Renewal(due: due)
    }

    /// Reads the renew's replies (nil: Redis did not answer): releases the claims ended
    /// meanwhile, stops the runs whose claim another run took, and sets the next renewal
    /// of the others.
    func finish(_ renewal: Renewal, replies: [RedisReply]?) {
        let next = MonotonicClock.now() + Self.period
        var lost: [@Sendable () -> Void] = []
        var release: [(jobID: String, run: String)] = []
        state.withLock { s in
            for (index, claim) in renewal.due.enumerated() {
                let ours = replies.map { RunClaim.renewKept($0[index]) } ?? true
                guard let current = s.entries[claim.id] else { continue }  // ended, no release asked
                if current.releaseAfterRenew {
                    s.entries[claim.id] = nil
                    if ours { release.append((claim.jobID, claim.run)) }
                } else if !ours {
                    s.entries[claim.id] = nil
                    lost.append(current.onLost)
                } else {
                    s.entries[claim.id]?.renewing = false
                    s.entries[claim.id]?.due = next
                }
            }
        }
        for claim in release { RunClaim.release(jobID: claim.jobID, run: claim.run, redis: redis) }
        for onLost in lost { onLost() }
    }

    /// The claims being renewed (for tests).
    var count: Int { state.withLock { $0.entries.count } }
}
