import HTTPTypes
import Hummingbird
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
        case event(seq: Int, name: String, envelope: [UInt8])
        case heartbeat
    }

    /// Streams the job's events after `afterSeq` to `emit`; returns after `chat_finished`.
    /// Heartbeats are delivered as `.heartbeat` so the caller can keep proxies awake.
    /// - Parameter onSubscribed: runs once the channel is subscribed and before the
    ///   replay is read: the place to submit a job whose events must not be missed.
    public func follow(
        jobID: String, afterSeq: Int, onSubscribed: () async throws -> Void = {}, emit: (Item) async throws -> Void
    ) async throws {
        let subscription = try await subscriber.subscribe(to: RedisKeys.channel(jobID))
        defer { subscription.cancel() }
        try await onSubscribed()

        var last = afterSeq
        // Returns true once chat_finished went out.
        func deliver(_ envelope: [UInt8]) async throws -> Bool {
            guard let peek = EventEnvelope.peek(envelope), peek.seq > last else { return false }
            last = peek.seq
            try await emit(.event(seq: peek.seq, name: peek.event, envelope: envelope))
            return peek.event == EventName.chatFinished.rawValue
        }
        func replay() async throws -> Bool {
            for envelope in try await readStream(jobID: jobID, after: last) where try await deliver(envelope) {
                return true
            }
            return false
        }

        if try await replay() { return }

        // Merge the live feed with a heartbeat tick, so one loop owns the writer.
        let (merged, continuation) = AsyncStream.makeStream(of: RedisSubscriptionEvent?.self)
        let heartbeat = self.heartbeat
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: heartbeat)
                if Task.isCancelled { break }
                continuation.yield(nil)
            }
        }
        let pump = Task {
            for try await event in subscription { continuation.yield(event) }
            continuation.finish()
        }
        defer {
            ticker.cancel()
            pump.cancel()
            continuation.finish()
        }

        for await item in merged {
            switch item {
            case nil:
                try await emit(.heartbeat)
            case .resubscribed?:
                if try await replay() { return }
            case .message(let envelope)?:
                if let peek = EventEnvelope.peek(envelope), peek.seq > last + 1 {
                    // Missed something: take it from the replay stream, in order.
                    if try await replay() { return }
                    continue
                }
                if try await deliver(envelope) { return }
            }
        }
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

/// Writes events in `text/event-stream` framing.
enum SSEFormat {
    static let headers: HTTPFields = [
        .contentType: "text/event-stream",
        .cacheControl: "no-cache",
        HTTPField.Name("X-Accel-Buffering")!: "no",
    ]

    /// `id: N`, `event: name`, `data: {...}` and the blank line.
    static func event(id: Int, name: String, data: some Collection<UInt8>) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(data.count + name.utf8.count + 32)
        buffer.writeString("id: \(id)\nevent: \(name)\n")
        writeData(data, to: &buffer)
        return buffer
    }

    /// `data: {...}` and the blank line (OpenAI's style: no `event:` lines).
    static func data(_ data: some Collection<UInt8>) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(data.count + 8)
        writeData(data, to: &buffer)
        return buffer
    }

    /// `data:` lines and the closing blank line; a value with line breaks (JSON may
    /// have them as whitespace) takes one `data:` line per line.
    private static func writeData(_ data: some Collection<UInt8>, to buffer: inout ByteBuffer) {
        if !data.contains(0x0A) {
            buffer.writeString("data: ")
            buffer.writeBytes(data)
            buffer.writeString("\n\n")
            return
        }
        for line in data.split(separator: 0x0A, omittingEmptySubsequences: false) {
            buffer.writeString("data: ")
            buffer.writeBytes(line.filter { $0 != 0x0D })
            buffer.writeString("\n")
        }
        buffer.writeString("\n")
    }

    static let heartbeat = ByteBuffer(string: ": keep-alive\n\n")
}
