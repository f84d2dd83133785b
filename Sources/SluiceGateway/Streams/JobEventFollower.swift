import Logging
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
public struct JobEventFollower: Sendable {
    let redis: RedisConnection
    let subscriber: RedisSubscriber
    let heartbeat: Duration

    public init(redis: RedisConnection, subscriber: RedisSubscriber, heartbeat: Duration = .seconds(15)) {
        self.redis = redis
        self.subscriber = subscriber
        self.heartbeat = heartbeat
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
    }

    /// Subscribes to the job's channel; once this returns, no event published later is
    /// missed. The place to start from when the job is yet to be submitted.
    public func subscribe(jobID: String) async throws -> JobEventFeed {
        let subscription = try await subscriber.subscribe(to: RedisKeys.channel(jobID))
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

    /// The envelopes in the replay stream after `seq` (entry IDs are `0-seq`).
    func readStream(jobID: String, after seq: Int) async throws -> [[UInt8]] {
        let reply = try await redis.execute(RedisCommand("XRANGE", RedisKeys.events(jobID), "0-\(seq + 1)", "+"))
        guard let entries = reply.array else { return [] }
        return entries.compactMap { entry -> [UInt8]? in
            guard let fields = entry.array?.last?.array, fields.count >= 2, case .bulk(let bytes) = fields[1] else { return nil }
            return bytes
        }
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
    func follow(
        afterSeq: Int, disconnect: ClientDisconnect?, emit: (JobEventFollower.Item) async throws -> Void
    ) async throws -> JobEventFollower.End {
        defer { subscription.cancel() }
        let jobID = self.jobID
        var last = afterSeq

        // Returns true once chat_finished went out.
        func deliver(_ envelope: [UInt8]) async throws -> Bool {
            guard let peek = EventEnvelope.peek(envelope) else { return false }
            return try await deliver(envelope, peek)
        }
        func deliver(_ envelope: [UInt8], _ peek: EventEnvelope.Peek) async throws -> Bool {
            guard peek.seq > last else { return false }
            last = peek.seq
            try await emit(.event(seq: peek.seq, name: peek.event, envelope: envelope, data: peek.data))
            return peek.event == EventName.chatFinished.rawValue
        }
        func replay() async throws -> Bool {
            for envelope in try await follower.readStream(jobID: jobID, after: last) {
                if disconnect?.hasFired == true { return false }
                if try await deliver(envelope) { return true }
            }
            return false
        }

        if disconnect?.hasFired == true { return .disconnected }
        if try await replay() { return .finished }

        // Merge the live feed, a heartbeat tick and the client's departure, so that one
        // loop owns the writer.
        let (merged, continuation) = AsyncStream.makeStream(of: Tick.self)
        let heartbeat = follower.heartbeat
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: heartbeat)
                if Task.isCancelled { break }
                continuation.yield(.heartbeat)
            }
        }
        let subscription = self.subscription
        let pump = Task {
            do {
                for try await event in subscription { continuation.yield(.live(event)) }
                continuation.yield(.ended(nil))
            } catch {
                continuation.yield(.ended(error))
            }
        }
        let token = disconnect?.onFire { continuation.yield(.disconnected) }
        defer {
            if let token { disconnect?.remove(token) }
            ticker.cancel()
            pump.cancel()
            continuation.finish()
        }

        for await tick in merged {
            switch tick {
            case .heartbeat:
                try await emit(.heartbeat)
            case .disconnected:
                return .disconnected
            case .ended(let error):
                if let error { throw error }
                throw SluiceError(.internal, "the event feed of job \"\(jobID)\" ended before chat_finished")
            case .live(.resubscribed):
                if try await replay() { return .finished }
            case .live(.message(let envelope)):
                guard let peek = EventEnvelope.peek(envelope) else { continue }
                if peek.seq > last + 1 {
                    // Missed something: take it from the replay stream, in order.
                    if try await replay() { return .finished }
                    continue
                }
                if try await deliver(envelope, peek) { return .finished }
            }
            if disconnect?.hasFired == true { return .disconnected }
        }
        // The merged stream only ends when this task is cancelled.
        throw CancellationError()
    }

    private enum Tick: Sendable {
        case heartbeat
        case live(RedisSubscriptionEvent)
        case ended((any Error)?)
        case disconnected
    }
}
