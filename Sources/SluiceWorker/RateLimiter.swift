import Foundation
import Logging
import SluiceCore
import SluiceKafka
import SluiceProviders
import SluiceRedis
import Synchronization
import SluiceSupport

/// Provider rate limits shared by every worker, held in Redis.
///
/// Each bucket (a provider's endpoint and the API key sent to it, the configured one or
/// the job's own) is a Redis hash
/// updated by one Lua script per admission, on Redis's clock, so all workers together
/// stay under the limit:
///
/// - requests: a GCRA without burst. Requests are spaced `60 / rpm` seconds apart, so a
///   provider that enforces its per-minute limit over shorter windows (as OpenAI does)
///   is never sent more than its share of any second.
/// - tokens: a bucket of one second's worth (`tpm / 60`) refilled continuously. A
///   request is charged its estimate (prompt bytes / 4 plus `max_tokens`) when admitted
///   and corrected with the real usage afterwards; one larger than the bucket goes when
///   the bucket is full and leaves it in debt.
/// - holds: a 429's `Retry-After`, or a response saying nothing remains until a reset,
///   holds the bucket for every worker until then.
/// - learned limits: a provider's `x-ratelimit-limit-*` / `anthropic-ratelimit-*-limit`
///   headers stand in for `rpm` / `tpm` where none is configured.
/// - lanes: while an interactive admission is waiting, batch admissions step back.
///
/// A bucket with no configured limit costs no round trip of its own in the common case:
/// the run claim's round trip also asks whether Redis holds, limits or queues anything on
/// the job's first bucket (`clearScript`), and when nothing does the first admission is
/// made at once (`admit(…, cleared: true)`). That answer is as fresh as an admission's
/// (read just before the provider call, on Redis's clock), so a hold another worker set
/// is still honoured; a 429, a retry or a fallback asks Redis as before.
///
/// In a worker, the jobs waiting on one bucket queue locally (interactive first, then
/// batch, each in arrival order) and only the head asks Redis, so a thousand waiting
/// jobs cost one round trip per admission rather than a thousand per second. Waiting
/// jobs hold no provider connection. Without Redis the limiter lets jobs through (and
/// still honours the holds this worker saw), so an outage does not stop the work.
public final class RateLimiter: Sendable {
    /// Where a job's requests are counted: one provider endpoint and the key used on it.
    public struct Bucket: Hashable, Sendable, CustomStringConvertible {
        public var provider: String
        /// A fingerprint of the base URL and the API key sent (never the key itself).
        public var fingerprint: String

        public init(provider: String, baseURL: String, apiKey: Secret?) {
            self.provider = provider
            self.fingerprint = RateLimiter.fingerprint(baseURL + "\n" + (apiKey?.value ?? ""))
        }

        var redisKey: String { "sluice:ratelimit:\(provider):\(fingerprint)" }

        public var description: String { "\(provider) (\(fingerprint.prefix(6)))" }
    }

    /// A job that would wait past its deadline.
    public struct Expired: Error, Sendable {
        /// Seconds it had waited when it gave up.
        public var waited: Double
        /// Whether the wait was for a hold set by the provider's 429 or headers.
        public var heldByProvider: Bool
    }

    /// How long learned limits and holds outlive the last admission.
    static let bucketTTLMs = 3_600_000

    /// Asked once per admission and told once per response: never per chunk.
    private let redis: any RedisCommandSink
    private let logger: Logger
    private let metrics: WorkerMetrics
    private let gates = Mutex<[Bucket: Gate]>([:])
    private let redisFailures = LogThrottle()

    public init(redis: any RedisCommandSink, logger: Logger, metrics: WorkerMetrics) {
        self.redis = redis
        self.logger = logger
        self.metrics = metrics
    }

    /// Waits until the bucket admits a request of `cost` tokens. Returns the seconds it
    /// waited. Throws `Expired` when the admission cannot come before `deadline` (a
    /// `MonotonicClock` time), and `CancellationError` when the task is cancelled.
    ///
    /// - Parameter cleared: Redis said a moment ago that nothing holds, limits or queues
    ///   on the bucket (`clearScript`, read with the run claim). With no configured
    ///   limit either, the request is admitted without asking Redis again, unless this
    ///   worker saw a hold on the bucket or has jobs waiting on it. Such an admission
    ///   charges no tokens, so it needs no `settle`.
    public func admit(
        _ bucket: Bucket, rpm: Int?, tpm: Int?, cost: Int, lane: JobPriority, deadline: Double, cleared: Bool = false
    ) async throws -> Double {
        let gate = gate(of: bucket)
        if cleared, rpm == nil, tpm == nil, gate.isIdle(now: MonotonicClock.now()) {
            if Task.isCancelled { throw CancellationError() }
            metrics.rateLimitAdmitted(provider: bucket.provider, waited: 0)
            return 0
        }
        let start = MonotonicClock.now()
        try await gate.wait(Waiter.Request(rpm: rpm ?? 0, tpm: tpm ?? 0, cost: max(0, cost), lane: lane, deadline: deadline),
                            limiter: self)
        let waited = MonotonicClock.now() - start
        metrics.rateLimitAdmitted(provider: bucket.provider, waited: waited)
        return waited
    }

    private func gate(of bucket: Bucket) -> Gate {
        gates.withLock { gates in
            if let g = gates[bucket] { return g }
            let g = Gate(bucket: bucket)
            gates[bucket] = g
            return g
        }
    }

    /// Corrects the token charge of an admitted request with what it really used.
    public func settle(_ bucket: Bucket, tpm: Int?, estimated: Int, actual: Int) {
        let delta = actual - estimated
        guard delta != 0 else { return }
        _ = redis.send(RedisCommand(script: RateLimiter.settleScript, keys: [bucket.redisKey],
                                    arguments: [String(delta), String(tpm ?? 0), String(RateLimiter.bucketTTLMs)]))
    }

    /// Follows what a response said: learns limits, and holds the bucket for every
    /// worker when the provider answered 429 or says nothing remains. Returns the hold
    /// in seconds (0 for none).
    @discardableResult
    public func observe(_ bucket: Bucket, headers: RateLimitHeaders?, rateLimited: Bool, fallbackHold: Double = 1) -> Double {
        let h = headers ?? RateLimitHeaders()
        var hold = 0.0
        if rateLimited {
            hold = h.retryAfter ?? [h.requestsRemaining == 0 ? h.requestsReset : nil,
                                    h.tokensRemaining == 0 ? h.tokensReset : nil].compactMap { $0 }.max() ?? fallbackHold
        } else {
            // Nothing left until a reset: wait for one request's worth of it, not for the
            // whole budget (OpenAI's reset is the time until it is full again).
            if h.requestsRemaining == 0, let reset = h.requestsReset {
                hold = max(hold, min(reset, h.requestLimit.map { 60.0 / Double(max($0, 1)) } ?? reset))
            }
            if h.tokensRemaining == 0, let reset = h.tokensReset { hold = max(hold, min(reset, 1)) }
        }
        hold = min(hold, 3600)
        if hold > 0 {
            gate(of: bucket).holdLocally(until: MonotonicClock.now() + hold)
        }
        let learnedRPM = h.requestLimit ?? 0
        let learnedTPM = h.tokenLimit ?? 0
        if hold > 0 || learnedRPM > 0 || learnedTPM > 0 {
            _ = redis.send(RedisCommand(script: RateLimiter.observeScript, keys: [bucket.redisKey], arguments: [
                String(Int(hold * 1000)), String(learnedRPM), String(learnedTPM), String(RateLimiter.bucketTTLMs),
            ]))
        }
        if rateLimited { metrics.rateLimitedByProvider(provider: bucket.provider) }
        return hold
    }

    /// One round trip: 0 when admitted, else the milliseconds to wait before asking again.
    fileprivate func ask(_ bucket: Bucket, _ request: Waiter.Request) async -> Int? {
        guard redis.isConnected else { return nil }
        do {
            let reply = try await redis.execute(RedisCommand(script: RateLimiter.admitScript, keys: [bucket.redisKey], arguments: [
                String(request.rpm), String(request.tpm), String(request.cost), request.lane.rawValue, String(RateLimiter.bucketTTLMs),
            ]))
            if let message = reply.errorMessage { throw RedisError(.invalidCommand, message) }
            guard let wait = reply.int else { return nil }
            return Int(max(0, wait))
        } catch {
            switch redisFailures.admit(bucket.provider) {
            case .first: logger.warning("rate limiter: Redis did not answer, admitting without the shared limit: \(error)")
            case .summary(let n): logger.warning("rate limiter: Redis still not answering (\(n) times), admitting without the shared limit")
            case .suppressed: break
            }
            return nil
        }
    }

    /// An FNV-1a 64 hash of a key, in hex: names a key's bucket without revealing it.
    static func fingerprint(_ key: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return String(hash, radix: 16)
    }

    // KEYS[1]: the bucket. ARGV: rpm, tpm (0: the learned one, if any), cost, lane, ttl ms.
    // Fields: rtat (the requests' theoretical arrival time, ms), tlvl/tts (token level and
    // when it was last refilled), hold (held until, ms), iw (an interactive admission is
    // waiting until, ms), lrpm/ltpm (learned limits).
    static let admitScript = RedisScript("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local h = redis.call('HMGET', KEYS[1], 'rtat', 'tlvl', 'tts', 'hold', 'iw', 'lrpm', 'ltpm')
        local rpm = tonumber(ARGV[1])
        if rpm == 0 then rpm = tonumber(h[6]) or 0 end
        local tpm = tonumber(ARGV[2])
        if tpm == 0 then tpm = tonumber(h[7]) or 0 end
        local cost = tonumber(ARGV[3])
        local interactive = ARGV[4] == 'interactive'
        local wait = 0
        local hold = tonumber(h[4]) or 0
        if hold > now then wait = hold - now end
        local iw = tonumber(h[5]) or 0
        if not interactive and iw > now then wait = math.max(wait, math.min(iw - now, 50)) end
        local tat = math.max(tonumber(h[1]) or 0, now)
        if rpm > 0 and tat > now then wait = math.max(wait, tat - now) end
        local cap = math.max(tpm / 60, 1)
        local level = tonumber(h[2])
        if tpm > 0 then
            if level == nil then level = cap end
            local last = tonumber(h[3]) or now
            level = math.min(cap, level + (now - last) * tpm / 60000)
            local need = math.min(cost, cap)
            if level < need then wait = math.max(wait, math.ceil((need - level) * 60000 / tpm)) end
        end
        if wait > 0 then
            -- Renewed by the waiter's next ask (at most 250 ms later) while it waits.
            if interactive then redis.call('HSET', KEYS[1], 'iw', now + wait + 300) end
            return wait
        end
        if interactive then redis.call('HDEL', KEYS[1], 'iw') end
        if rpm > 0 then redis.call('HSET', KEYS[1], 'rtat', tat + 60000 / rpm) end
        if tpm > 0 then redis.call('HSET', KEYS[1], 'tlvl', level - cost, 'tts', now) end
        redis.call('PEXPIRE', KEYS[1], ARGV[5])
        return 0
        """)

    // KEYS[1]: the bucket. 1 when nothing holds, limits or queues on it: no hold, no
    // interactive admission waiting, no learned limit. Reads only.
    static let clearScript = RedisScript("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local h = redis.call('HMGET', KEYS[1], 'hold', 'iw', 'lrpm', 'ltpm')
        if (tonumber(h[1]) or 0) > now or (tonumber(h[2]) or 0) > now then return 0 end
        if (tonumber(h[3]) or 0) > 0 or (tonumber(h[4]) or 0) > 0 then return 0 end
        return 1
        """)

    // ARGV: token delta (real minus estimate), tpm, ttl ms.
    static let settleScript = RedisScript("""
        local tpm = tonumber(ARGV[2])
        if tpm == 0 then tpm = tonumber(redis.call('HGET', KEYS[1], 'ltpm')) or 0 end
        if tpm == 0 then return 0 end
        local level = tonumber(redis.call('HGET', KEYS[1], 'tlvl'))
        if level == nil then return 0 end
        redis.call('HSET', KEYS[1], 'tlvl', math.min(math.max(tpm / 60, 1), level - tonumber(ARGV[1])))
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        return 1
        """)

    // ARGV: hold ms, learned rpm, learned tpm (0: none), ttl ms.
    static let observeScript = RedisScript("""
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local hold = tonumber(ARGV[1])
        if hold > 0 then
            local cur = tonumber(redis.call('HGET', KEYS[1], 'hold')) or 0
            if now + hold > cur then redis.call('HSET', KEYS[1], 'hold', now + hold) end
        end
        if tonumber(ARGV[2]) > 0 then redis.call('HSET', KEYS[1], 'lrpm', ARGV[2]) end
        if tonumber(ARGV[3]) > 0 then redis.call('HSET', KEYS[1], 'ltpm', ARGV[3]) end
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return 1
        """)
}

/// A job waiting for admission.
private final class Waiter: Sendable {
    struct Request: Sendable {
        var rpm: Int
        var tpm: Int
        var cost: Int
        var lane: JobPriority
        /// MonotonicClock time.
        var deadline: Double
    }

    let request: Request
    let sequence: UInt64
    let continuation: CheckedContinuation<Void, any Error>
    let since = MonotonicClock.now()

    init(request: Request, sequence: UInt64, continuation: CheckedContinuation<Void, any Error>) {
        self.request = request
        self.sequence = sequence
        self.continuation = continuation
    }
}

/// One bucket's waiting jobs in this worker, and the task that admits them in order.
private final class Gate: Sendable {
    private struct State {
        var waiters: [Waiter] = []
        var pumping = false
        var nextSequence: UInt64 = 0
        var localHoldUntil = 0.0
        /// Set when the head's wait was a hold the provider asked for.
        var heldByProvider = false
        /// No waiter's deadline is before this (a lower bound: waiters that left may
        /// have had it), so the pump scans for expired waiters only once it has passed.
        var earliestDeadline = Double.infinity
        /// Batch-lane waiters queued: while there are none, an interactive one goes
        /// last without a search.
        var batchWaiters = 0

        mutating func remove(at index: Int) -> Waiter {
            let waiter = waiters.remove(at: index)
            if waiter.request.lane == .batch { batchWaiters -= 1 }
            return waiter
        }

        /// Removes and returns the waiters whose deadline is not after `now`.
        mutating func takeExpired(now: Double) -> [Waiter] {
            guard earliestDeadline <= now else { return [] }
            let gone = waiters.filter { $0.request.deadline <= now }
            if !gone.isEmpty {
                waiters.removeAll { $0.request.deadline <= now }
                batchWaiters = waiters.lazy.filter { $0.request.lane == .batch }.count
            }
            earliestDeadline = waiters.lazy.map(\.request.deadline).min() ?? .infinity
            return gone
        }
    }

    private let bucket: RateLimiter.Bucket
    private let state = Mutex(State())

    init(bucket: RateLimiter.Bucket) {
        self.bucket = bucket
    }

    /// Nobody of this worker waits on the bucket and no hold this worker saw lasts.
    func isIdle(now: Double) -> Bool {
        state.withLock { s in s.waiters.isEmpty && !s.pumping && s.localHoldUntil <= now }
    }

    func holdLocally(until t: Double) {
        state.withLock { s in
            s.localHoldUntil = max(s.localHoldUntil, t)
            s.heldByProvider = true
        }
    }

    /// - Parameter limiter: asks Redis; held by the admitting task only while it runs.
    func wait(_ request: Waiter.Request, limiter: RateLimiter) async throws {
        if Task.isCancelled { throw CancellationError() }
        let id = Mutex<UInt64?>(nil)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let startPump = state.withLock { s -> Bool in
                    let waiter = Waiter(request: request, sequence: s.nextSequence, continuation: continuation)
                    s.nextSequence += 1
                    id.withLock { $0 = waiter.sequence }
                    // Interactive before batch; arrival order within a lane.
                    let index = request.lane == .interactive && s.batchWaiters > 0
                        ? s.waiters.firstIndex { $0.request.lane == .batch } ?? s.waiters.endIndex
                        : s.waiters.endIndex
                    s.waiters.insert(waiter, at: index)
                    if request.lane == .batch { s.batchWaiters += 1 }
                    s.earliestDeadline = min(s.earliestDeadline, request.deadline)
                    if s.pumping { return false }
                    s.pumping = true
                    return true
                }
                if startPump { Task { await self.pump(limiter) } }
            }
        } onCancel: {
            let removed = state.withLock { s -> Waiter? in
                guard let seq = id.withLock({ $0 }), let i = s.waiters.firstIndex(where: { $0.sequence == seq }) else { return nil }
                return s.remove(at: i)
            }
            removed?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Admits the head, or sleeps for as long as Redis says; ends when nobody waits.
    private func pump(_ limiter: RateLimiter) async {
        while true {
            let now = MonotonicClock.now()
            // Whoever cannot make it in time leaves now, not when they reach the head.
            let (head, expired, localHold) = state.withLock { s -> (Waiter?, [Waiter], Double) in
                let gone = s.takeExpired(now: now)
                if s.waiters.isEmpty { s.pumping = false }
                return (s.waiters.first, gone, s.localHoldUntil)
            }
            let held = state.withLock { $0.heldByProvider }
            for w in expired { w.continuation.resume(throwing: RateLimiter.Expired(waited: now - w.since, heldByProvider: held)) }
            guard let head else { return }

            var waitMs: Int
            if localHold > now {
                waitMs = Int(((localHold - now) * 1000).rounded(.up))
            } else {
                waitMs = await limiter.ask(bucket, head.request) ?? 0
            }
            if waitMs == 0 {
                let admitted = state.withLock { s -> Bool in
                    guard let i = s.waiters.firstIndex(where: { $0.sequence == head.sequence }) else { return false }
                    _ = s.remove(at: i)
                    s.heldByProvider = false
                    return true
                }
                if admitted { head.continuation.resume() }
                continue
            }
            let after = MonotonicClock.now()
            if after + Double(waitMs) / 1000 > head.request.deadline {
                // The head cannot be admitted in time; the next one may have more time.
                let removed = state.withLock { s -> Bool in
                    guard let i = s.waiters.firstIndex(where: { $0.sequence == head.sequence }) else { return false }
                    _ = s.remove(at: i)
                    return true
                }
                if removed {
                    head.continuation.resume(throwing: RateLimiter.Expired(waited: after - head.since, heldByProvider: held))
                }
                continue
            }
            // Short naps: a newly arrived interactive job moves to the head within them.
            try? await Task.sleep(for: .milliseconds(min(waitMs, 250)))
        }
    }
}
