import Foundation
import Hummingbird
import SluiceCore
@testable import SluiceGateway
import SluiceRedis
import Testing

/// The gateway's relay path against the real Redis: a reader takes every message that
/// is ready in one batch, and a burst of events goes to the client as one write that
/// keeps their order, their ids and their framing.
@Suite(.needsServices, .timeLimit(.minutes(2)))
struct SSERelayTests {
    @Test func aBatchTakesEverythingBufferedInOrder() async throws {
        try await withRedis { redis, subscriber in
            let channel = "sluice-test:batch:\(UUID().uuidString)"
            let subscription = try await subscriber.subscribe(to: channel)
            let count = 200
            for index in 0..<count {
                redis.send(RedisCommand("PUBLISH", channel, String(index)))
            }
            _ = try await redis.execute(RedisCommand("PING"))
            try await Task.sleep(for: .milliseconds(200))  // let the subscriber buffer them

            var received: [String] = []
            var batches = 0
            var batch: [RedisSubscriptionEvent] = []
            while received.count < count {
                #expect(try await withWatchdog(subscription) { try await subscription.nextBatch(into: &batch) })
                batches += 1
                for event in batch {
                    guard case .message(let payload) = event else {
                        Issue.record("unexpected \(event)")
                        return
                    }
                    received.append(String(decoding: payload, as: UTF8.self))
                }
            }
            #expect(received == (0..<count).map(String.init))
            #expect(batches < count / 2, "messages that were waiting should come together, got \(batches) batches")

            // A wake-up returns an empty batch, even one that came before the wait.
            subscription.wake()
            #expect(try await withWatchdog(subscription) { try await subscription.nextBatch(into: &batch) })
            #expect(batch.isEmpty)

            // Messages after the batch still come, then the end.
            _ = try await redis.execute(RedisCommand("PUBLISH", channel, "last"))
            #expect(try await withWatchdog(subscription) { try await subscription.nextBatch(into: &batch) })
            #expect(batch == [.message(Array("last".utf8))])
            subscription.cancel()
            #expect(try await subscription.nextBatch(into: &batch) == false)
        }
    }

    /// The subscriber routes with its own copy of each channel's readers; a reader that
    /// joins a channel already subscribed (confirmed at once, without waking the thread)
    /// must still get the very next message, and one that left must get nothing more.
    @Test func readersJoiningAndLeavingALiveChannelAreRoutedAtOnce() async throws {
        try await withRedis { redis, subscriber in
            let channel = "sluice-test:routes:\(UUID().uuidString)"
            let anchor = try await subscriber.subscribe(to: channel)
            var anchorBatch: [RedisSubscriptionEvent] = []
            var batch: [RedisSubscriptionEvent] = []
            for round in 0..<100 {
                let joining = try await subscriber.subscribe(to: channel)
                _ = try await redis.execute(RedisCommand("PUBLISH", channel, String(round)))
                #expect(try await withWatchdog(joining) { try await joining.nextBatch(into: &batch) })
                #expect(batch == [.message(Array(String(round).utf8))], "round \(round)")
                joining.cancel()
                #expect(try await withWatchdog(anchor) { try await anchor.nextBatch(into: &anchorBatch) })
                #expect(anchorBatch == [.message(Array(String(round).utf8))], "round \(round)")
            }
            anchor.cancel()
        }
    }

    @Test func aBurstIsWrittenOnceInOrderWithItsIDs() async throws {
        try await withRedis { redis, subscriber in
            let jobID = "relay-\(UUID().uuidString)"
            let follower = JobEventFollower(redis: redis, subscriber: subscriber, heartbeat: .seconds(60))
            let feed = try await follower.subscribe(jobID: jobID)
            let chunks = 50
            // Published only (not stored), so every event comes from the live feed; seq 7
            // twice, which the reader must drop.
            var published: [[UInt8]] = (1...chunks).map { seq in
                EventEnvelope.encode(jobID: jobID, seq: seq, event: .chunk, data: Array(#"{"n":\#(seq)}"#.utf8), ts: 1)
            }
            published.insert(published[6], at: 7)
            published.append(EventEnvelope.encode(jobID: jobID, seq: chunks + 1, event: .chatFinished, data: Array("{}".utf8), ts: 1))
            for envelope in published {
                redis.send(RedisCommand([Array("PUBLISH".utf8), Array(RedisKeys.channel(jobID).utf8), envelope]))
            }
            _ = try await redis.execute(RedisCommand("PING"))
            try await Task.sleep(for: .milliseconds(200))

            var completion = CompletionFrames(style: CompletionStyle(api: "openai", stream: true, includeUsageChunk: false), jobID: jobID)
            var events = ByteBuffer()
            var frames = ByteBuffer()
            var writes: [(events: String, frames: String)] = []
            let end = try await feed.follow(afterSeq: 0, disconnect: nil) { item in
                if case .event(let seq, let name, let envelope, _) = item {
                    SSEFormat.writeEvent(id: seq, name: name, data: envelope, range: 0..<envelope.count, to: &events)
                }
                completion.write(item, to: &frames)
            } flush: {
                writes.append((String(buffer: events), String(buffer: frames)))
                events.clear()
                frames.clear()
            }
            #expect(end == .finished)
            #expect(writes.count < chunks / 2, "a burst should go out in few writes, got \(writes.count)")
            #expect(writes.allSatisfy { $0.events.hasSuffix("\n\n") && $0.frames.hasSuffix("\n\n") })

            let expectedEvents = (1...chunks).map { seq in
                "id: \(seq)\nevent: chunk\ndata: \(String(decoding: published[seq <= 7 ? seq - 1 : seq], as: UTF8.self))\n\n"
            }.joined() + "id: \(chunks + 1)\nevent: chat_finished\ndata: \(String(decoding: published.last!, as: UTF8.self))\n\n"
            #expect(writes.map(\.events).joined() == expectedEvents)
            let expectedFrames = (1...chunks).map { "data: {\"n\":\($0)}\n\n" }.joined() + "data: [DONE]\n\n"
            #expect(writes.map(\.frames).joined() == expectedFrames)
        }
    }

    /// A finished job's stream is replayed a page at a time, each page handed to the
    /// client (flushed) before the next is read, and resuming mid-page starts right after.
    @Test func theReplayIsReadAndWrittenPageByPage() async throws {
        try await withRedis { redis, subscriber in
            let jobID = "paged-\(UUID().uuidString)"
            let key = RedisKeys.events(jobID)
            defer { redis.send(RedisCommand("DEL", key)) }
            let total = 2 * JobEventFollower.replayPage + 45
            for seq in 1...total {
                let event: EventName = seq == total ? .chatFinished : .chunk
                let envelope = EventEnvelope.encode(jobID: jobID, seq: seq, event: event, data: Array(#"{"n":\#(seq)}"#.utf8), ts: 1)
                redis.send(RedisCommand([Array("XADD".utf8), Array(key.utf8), Array("0-\(seq)".utf8), Array("e".utf8), envelope]))
            }
            _ = try await redis.execute(RedisCommand("PING"))
            let follower = JobEventFollower(redis: redis, subscriber: subscriber, heartbeat: .seconds(60))

            for resumeAfter in [0, 300] {
                var seqs: [Int] = []
                var flushedAt: [Int] = []
                let end = try await follower.subscribe(jobID: jobID).follow(afterSeq: resumeAfter, disconnect: nil) { item in
                    if case .event(let seq, _, _, _) = item { seqs.append(seq) }
                } flush: {
                    flushedAt.append(seqs.count)
                }
                #expect(end == .finished)
                #expect(seqs == Array((resumeAfter + 1)...total), "every event once, in order, after \(resumeAfter)")
                // A flush after every full page: never more than a page held.
                let pages = (total - resumeAfter + JobEventFollower.replayPage - 1) / JobEventFollower.replayPage
                #expect(flushedAt.count == pages, "flushes at \(flushedAt)")
                #expect(zip(flushedAt, flushedAt.dropFirst()).allSatisfy { $1 - $0 <= JobEventFollower.replayPage })
                #expect(flushedAt.first.map { $0 <= JobEventFollower.replayPage } == true)
            }
            // A resume point at the very end of the range cannot overflow.
            let feed = try await follower.subscribe(jobID: jobID)
            let page = try await follower.readStream(jobID: jobID, after: Int.max)
            feed.cancel()
            #expect(page.entries.isEmpty && !page.more)
        }
    }

    /// A reader whose buffer of live events overflows is unsubscribed at once (its
    /// memory freed), and its follow ends with `subscriptionOverflow` when it next looks.
    @Test func aReaderThatFallsBehindIsCut() async throws {
        try await withRedis { redis, subscriber in
            let jobID = "behind-\(UUID().uuidString)"
            let follower = JobEventFollower(redis: redis, subscriber: subscriber, heartbeat: .seconds(60), bufferEvents: 16)
            let feed = try await follower.subscribe(jobID: jobID)
            let channel = RedisKeys.channel(jobID)
            // Published while the reader is busy elsewhere (it has not started to follow).
            for seq in 1...40 {
                let envelope = EventEnvelope.encode(jobID: jobID, seq: seq, event: .chunk, data: Array("{}".utf8), ts: 1)
                redis.send(RedisCommand([Array("PUBLISH".utf8), Array(channel.utf8), envelope]))
            }
            let deadline = ContinuousClock.now + .seconds(5)
            while try await redis.execute(RedisCommand("PUBSUB", "NUMSUB", channel)).array?.last?.int != 0 {
                #expect(ContinuousClock.now < deadline, "the overflowing reader is unsubscribed")
                if ContinuousClock.now > deadline { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            await #expect {
                try await feed.follow(afterSeq: 0, disconnect: nil) { _ in }
            } throws: { error in
                (error as? RedisError)?.code == .subscriptionOverflow
            }
        }
    }

    @Test func heartbeatsAndDisconnectWakeTheReader() async throws {
        try await withRedis { redis, subscriber in
            let follower = JobEventFollower(redis: redis, subscriber: subscriber, heartbeat: .milliseconds(50))
            let feed = try await follower.subscribe(jobID: "relay-\(UUID().uuidString)")
            let disconnect = ClientDisconnect()
            let heartbeats = Counter()
            Task {
                try await Task.sleep(for: .milliseconds(400))
                disconnect.fire()
            }
            let started = ContinuousClock.now
            let end = try await feed.follow(afterSeq: 0, disconnect: disconnect) { item in
                if case .heartbeat = item { heartbeats.increment() }
            }
            #expect(end == .disconnected)
            #expect(ContinuousClock.now - started < .seconds(5))
            #expect(heartbeats.value >= 2)
        }
    }

    @Test func sseFramingMatchesTheOneEventForm() {
        let envelope = Array("{\"a\":1,\r\n \"b\":[2]}".utf8)
        var buffer = ByteBuffer()
        SSEFormat.writeEvent(id: 1_234_567, name: "chunk", data: envelope, range: 0..<envelope.count, to: &buffer)
        SSEFormat.writeData(envelope, range: 1..<6, to: &buffer)
        #expect(String(buffer: buffer) == "id: 1234567\nevent: chunk\ndata: {\"a\":1,\ndata:  \"b\":[2]}\n\n" + "data: \"a\":1\n\n")
        #expect(String(buffer: SSEFormat.event(id: 0, name: "x", data: Array("{}".utf8))) == "id: 0\nevent: x\ndata: {}\n\n")
    }
}

private final class Counter: @unchecked Sendable {
    // @unchecked: only touched from the following task, one call at a time.
    private(set) var value = 0
    func increment() { value += 1 }
}

/// Runs `body`; cancels the subscription if it takes over 10 s, so a test fails instead
/// of hanging.
private func withWatchdog<T>(_ subscription: RedisSubscription, _ body: () async throws -> T) async throws -> T {
    let watchdog = Task {
        try await Task.sleep(for: .seconds(10))
        subscription.cancel()
    }
    defer { watchdog.cancel() }
    return try await body()
}

private func withRedis(_ body: (RedisConnection, RedisSubscriber) async throws -> Void) async throws {
    let configuration = try RedisConfiguration(url: try TestServices.redisURL())
    let redis = RedisConnection(configuration: configuration, logger: TestServices.logger)
    let subscriber = RedisSubscriber(configuration: configuration, logger: TestServices.logger)
    defer {
        subscriber.shutdown()
        redis.shutdown()
    }
    try await body(redis, subscriber)
}

/// A completion relay follows one run of a job: a run that takes over after chunks were
/// relayed ends the relay instead of mixing two replies.
@Suite struct RunGuardTests {
    func envelope(run: String, seq: Int, event: EventName) -> [UInt8] {
        EventEnvelope.encode(jobID: "j", seq: seq, event: event, data: Array("{}".utf8), ts: 0).withPrefix(run: run)
    }

    @Test func aNewRunBeforeAnyChunkIsFollowedAfterOneItEndsTheRelay() {
        var runs = RunGuard()
        let steps: [(String, EventName, Bool)] = [
            ("a", .chatStarted, true), ("b", .chatStarted, true), ("b", .chunk, true), ("b", .chunk, true), ("c", .chatStarted, false),
        ]
        let admitted = steps.enumerated().map { i, step in
            runs.admit(envelope(run: step.0, seq: i + 1, event: step.1), isChunk: step.1 == .chunk)
        }
        // a -> b before any chunk is followed; c after b's chunks ends the relay.
        #expect(admitted == steps.map(\.2))
    }
}

private extension Array where Element == UInt8 {
    /// The envelope as a worker of run `run` writes it.
    func withPrefix(run: String) -> [UInt8] {
        let plain = EventEnvelope.prefix(jobID: "j")
        return EventEnvelope.prefix(jobID: "j", run: run) + self[plain.count...]
    }
}
