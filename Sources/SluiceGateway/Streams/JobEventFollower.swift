import Logging
import Synchronization
import SluiceCore
import SluiceRedis

/// Follows a job's events for a reader: first what is already in the replay stream
/// (after `Last-Event-ID`), then the live channel, with no gap and no repeat, until
/// `chat_finished`.
///
/// The channel is subscribed before the replay is read, so an event published between
/// the two is never missed; events seen twice are dropped by `seq`. A gap in the live
/// feed (a Redis reconnect) is filled from the replay stream.
///
/// Every reader of the process shares the gateway's one `RedisSubscriber` connection.
///
/// A reader's memory is bounded: the replay stream is read a page at a time
/// (`replayPage` entries), each page delivered and flushed before the next is read, and
/// the live feed buffers at most `bufferEvents` events. A reader that falls further
/// behind (its client reads slower than the job writes) is unsubscribed: its `follow`
/// throws `RedisError.Code.subscriptionOverflow`, and an event stream's client resumes
/// with `Last-Event-ID`.
///
/// A finished job's replay holds its lifecycle events and its result, not its chunks
/// (`ReplayCompaction`): its readers get those, in seq order, and a reader resuming
/// after a removed chunk gets the next event kept.
///
/// With `marksFollowed`, a reader keeps the job's follow mark (`FollowMark`) set from
/// the moment it subscribes until it leaves, so that a batch-lane job publishes its
/// chunks while someone watches (`worker.batch_chunk_events: followed`).
public struct JobEventFollower: Sendable {
    let redis: RedisConnection
    let subscriber: RedisSubscriber
    let heartbeat: Duration
    let bufferEvents: Int
    let marksFollowed: Bool

    /// Entries read from the replay stream per `XRANGE`.
    static let replayPage = 256

    public init(redis: RedisConnection, subscriber: RedisSubscriber, heartbeat: Duration = .seconds(15), bufferEvents: Int = 1024,
                marksFollowed: Bool = false) {
        self.redis = redis
        self.subscriber = subscriber
        self.heartbeat = heartbeat
        self.bufferEvents = bufferEvents
        self.marksFollowed = marksFollowed
    }

    /// Sets the job's follow mark for `FollowMark.ttlMilliseconds`. Queued on the
    /// connection that then submits the job, so a worker starting it sees the mark.
    func markFollowed(_ jobID: String) {
        redis.send(RedisCommand("SET", RedisKeys.followed(jobID), "1", "PX", String(FollowMark.ttlMilliseconds)))
    }

    public enum Item: Sendable {
        /// An event envelope as published, and where its `data` value sits in it, so a
        /// relay can write the bytes of either without decoding them.
        case event(seq: Int, name: String, envelope: [UInt8], data: Range<Int>)
        case heartbeat
    }

    /// How a follow ended.
    public enum End: Sendable, Equatable {
        /// `chat_finished` went out.
        case finished
        /// The client went away first.
        case disconnected
        /// `flush` threw `PauseFollow`: every event up to this `seq` went out, and the
        /// subscription is kept for a `follow(afterSeq:)` that goes on from there.
        case paused(afterSeq: Int)
    }

    /// Thrown by a `flush` to stop following for now, without losing the subscription.
    public struct PauseFollow: Error {
        public init() {}
    }

    /// Subscribes to the job's channel; once this returns, no event published later is
    /// missed. The place to start from when the job is yet to be submitted.
    public func subscribe(jobID: String) async throws -> JobEventFeed {
        let subscription = try await subscriber.subscribe(
            to: RedisKeys.channel(jobID), bufferingPolicy: .bounded(maxEvents: bufferEvents))
        if marksFollowed { markFollowed(jobID) }
        return JobEventFeed(jobID: jobID, subscription: subscription, follower: self)
    }

    /// Streams the job's events after `afterSeq` to `emit`; returns after `chat_finished`.
    /// Heartbeats are delivered as `.heartbeat` so the caller can keep proxies awake.
    /// - Parameter onSubscribed: runs once the channel is subscribed and before the
    ///   replay is read: the place to submit a job whose events must not be missed.
    @discardableResult
    public func follow(
        jobID: String, afterSeq: Int, onSubscribed: () async throws -> Void = {}, emit: (Item) async throws -> Void
    ) async throws -> End {
        let feed = try await subscribe(jobID: jobID)
        defer { feed.cancel() }
        try await onSubscribed()
        return try await feed.follow(afterSeq: afterSeq, emit: emit)
    }

    /// One page of the replay stream: at most `count` entries after `seq` (entry IDs are
    /// `0-seq`; the start is exclusive, so no `seq + 1` can overflow), each with its seq;
    /// `more` when the page is full (the stream may hold more after it).
    func readStream(
        jobID: String, after seq: Int, count: Int = JobEventFollower.replayPage
    ) async throws -> (entries: [(seq: Int, envelope: [UInt8])], more: Bool) {
        let reply = try await redis.execute(
            RedisCommand("XRANGE", RedisKeys.events(jobID), "(0-\(seq)", "+", "COUNT", String(count)))
        guard let entries = reply.array else { return ([], false) }
        return (entries.compactMap(JobEventFollower.streamEntry), entries.count >= count)
    }

    /// Whether the job's replay stream ends with `chat_finished` at or before `seq`: a
    /// reader resuming there has nothing left to wait for.
    func hasFinished(jobID: String, atOrBefore seq: Int) async throws -> Bool {
        let reply = try await redis.execute(RedisCommand("XREVRANGE", RedisKeys.events(jobID), "+", "-", "COUNT", "1"))
        guard let entry = reply.array?.first.flatMap(JobEventFollower.streamEntry), entry.seq <= seq,
              let fields = EventEnvelope.peek(entry.envelope)
        else { return false }
        return fields.event == EventName.chatFinished.rawValue
    }

    /// One replay stream entry: its seq (from the entry id `0-seq`) and the event envelope.
    private static func streamEntry(_ entry: RedisReply) -> (seq: Int, envelope: [UInt8])? {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
              let entrySeq = id.split(separator: "-").last.flatMap({ Int($0) }),
              let fields = parts[1].array, fields.count >= 2, case .bulk(let bytes) = fields[1]
        else { return nil }
        return (entrySeq, bytes)
    }
}

/// One reader's subscription to a job's channel, from `JobEventFollower.subscribe`. Its
/// Redis slot is freed by `cancel()`, at the end of `follow`, or when the last copy goes.
public struct JobEventFeed: Sendable {
    public let jobID: String
    let subscription: RedisSubscription
    let follower: JobEventFollower

    /// Frees the reader's slot on the subscriber connection.
    public func cancel() {
        subscription.cancel()
    }

    /// Streams the job's events after `afterSeq` to `emit` until `chat_finished`.
    @discardableResult
    public func follow(afterSeq: Int, emit: (JobEventFollower.Item) async throws -> Void) async throws -> JobEventFollower.End {
        try await follow(afterSeq: afterSeq, disconnect: nil, emit: emit)
    }

    /// As `follow(afterSeq:emit:)`, and returns `.disconnected` at once when `disconnect`
    /// fires. The subscription is freed whenever this returns or throws.
    ///
    /// `flush` runs after `emit` whenever no further event is ready (after each batch of
    /// events that arrived together, and before returning `.finished`), so a caller may
    /// collect what `emit` gets and write it to its client in one piece. It is not
    /// called when this returns `.disconnected` or throws. A `flush` that throws
    /// `JobEventFollower.PauseFollow` makes this return `.paused` with the subscription
    /// kept: a later call, with that `seq`, goes on with no gap and no repeat.
    ///
    /// The live feed is read on the caller's task, a batch at a time: messages that
    /// arrive while the caller writes are taken together with one wake-up. Heartbeats and
    /// the client's departure wake the same wait.
    func follow(
        afterSeq: Int,
        disconnect: ClientDisconnect?,
        emit: (JobEventFollower.Item) async throws -> Void,
        flush: () async throws -> Void = {}
    ) async throws -> JobEventFollower.End {
        let subscription = self.subscription
        var paused = false
        defer { if !paused { subscription.cancel() } }
        let jobID = self.jobID
        // The follow mark, kept while this reader stays (set first on subscribing).
        let follower = self.follower
        let marker: Task<Void, Never>? = follower.marksFollowed ? Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: FollowMark.refreshEvery)
                if Task.isCancelled { break }
                follower.markFollowed(jobID)
            }
        } : nil
        defer { marker?.cancel() }
        var last = afterSeq
        // Something was emitted since the last flush.
        var unflushed = false

        // Returns true once chat_finished went out, or came at or before `last` (a reader
        // that resumed after the end: it has everything).
        func deliver(_ envelope: [UInt8], _ fields: EventEnvelope.Peek) async throws -> Bool {
            guard fields.seq > last else { return fields.event == EventName.chatFinished.rawValue }
            last = fields.seq
            unflushed = true
            try await emit(.event(seq: fields.seq, name: fields.event, envelope: envelope, data: fields.data))
            return fields.event == EventName.chatFinished.rawValue
        }
        func flushIfNeeded() async throws {
            guard unflushed else { return }
            unflushed = false
            do {
                try await flush()
            } catch is JobEventFollower.PauseFollow {
                paused = true
                throw JobEventFollower.PauseFollow()
            }
        }
        // Page by page from after `last`, each page delivered and flushed before the
        // next is read: a long stream is never held whole.
        func replay() async throws -> Bool {
            var cursor = last
            while true {
                let page = try await follower.readStream(jobID: jobID, after: cursor)
                let start = cursor
                for (seq, envelope) in page.entries {
                    if disconnect?.hasFired == true { return false }
                    cursor = max(cursor, seq)
                    guard let fields = EventEnvelope.peek(envelope) else { continue }
                    if try await deliver(envelope, fields) { return true }
                }
                guard page.more, cursor > start else { return false }
                try await flushIfNeeded()
            }
        }

        do {
            if disconnect?.hasFired == true { return .disconnected }
            // A reader resuming at or after the end of a finished job has everything.
            if afterSeq > 0, try await follower.hasFinished(jobID: jobID, atOrBefore: afterSeq) { return .finished }
            if try await replay() {
                try await flushIfNeeded()
                return .finished
            }
            try await flushIfNeeded()

            // The heartbeat timer and the client's departure wake the reader's wait on the
            // subscription; nothing else stands between the subscriber's thread and this task.
            let heartbeatDue = HeartbeatFlag()
            let heartbeat = follower.heartbeat
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: heartbeat)
                    if Task.isCancelled { break }
                    heartbeatDue.raise()
                    subscription.wake()
                }
            }
            let token = disconnect?.onFire { subscription.wake() }
            defer {
                if let token { disconnect?.remove(token) }
                ticker.cancel()
            }

            var batch: [RedisSubscriptionEvent] = []
            batch.reserveCapacity(8)
            while try await subscription.nextBatch(into: &batch) {
                if disconnect?.hasFired == true { return .disconnected }
                if heartbeatDue.lower() {
                    unflushed = true
                    try await emit(.heartbeat)
                }
                for event in batch {
                    switch event {
                    case .resubscribed:
                        if try await replay() {
                            try await flushIfNeeded()
                            return .finished
                        }
                    case .message(let envelope):
                        guard let fields = EventEnvelope.peek(envelope) else { continue }
                        // (`last < Int.max` first: a resume point at the end of the range cannot
                        // overflow, and nothing can come after it anyway.)
                        if last < Int.max, fields.seq > last + 1 {
                            // Missed something: take it from the replay stream, in order.
                            if try await replay() {
                                try await flushIfNeeded()
                                return .finished
                            }
                            continue
                        }
                        if try await deliver(envelope, fields) {
                            try await flushIfNeeded()
                            return .finished
                        }
                    }
                }
                if disconnect?.hasFired == true { return .disconnected }
                try await flushIfNeeded()
            }
            if Task.isCancelled { throw CancellationError() }
            throw SluiceError(.internal, "the event feed of job \"\(jobID)\" ended before chat_finished")
        } catch is JobEventFollower.PauseFollow {
            return .paused(afterSeq: last)
        }
    }
}

/// Set by a follow's heartbeat timer, taken by its loop.
private final class HeartbeatFlag: Sendable {
    private let due = Atomic<Bool>(false)

    func raise() { due.store(true, ordering: .relaxed) }

    /// Whether a heartbeat was due; clears it.
    func lower() -> Bool { due.exchange(false, ordering: .relaxed) }
}
