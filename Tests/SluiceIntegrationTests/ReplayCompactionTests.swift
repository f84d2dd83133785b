import Foundation
import Hummingbird
import SluiceCore
@testable import SluiceGateway
import SluiceMockProvider
import SluiceRedis
import Testing

/// What a job leaves in Redis once it finished: its lifecycle events and result, not its
/// chunks; what late readers and relays make of that; and batch-lane jobs that publish
/// chunks only while someone follows them.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(4)))
struct ReplayCompactionTests {
    /// The most Redis memory a finished job of about a hundred chunks may hold
    /// (`MEMORY USAGE` of every key it left, summed): its replay (four events, the final
    /// response among them), its result and its meta. Measured here: 7.0 KB (the
    /// replay 4.2 KB, the result 2.6 KB, the meta 0.1 KB), against 49 KB with every
    /// chunk kept.
    static let bytesPerFinishedJob = 8 * 1024
    static let jobs = 50
    static let chunks = 100

    @Test func aFinishedJobHoldsAFewKilobytesOfRedis() async throws {
        let compacted = try await measureFinishedJobs(compact: true)
        let kept = try await measureFinishedJobs(compact: false)
        let figures = "\(compacted.bytesPerJob) bytes a job compacted, \(kept.bytesPerJob) with every chunk kept"
        #expect(compacted.bytesPerJob <= Self.bytesPerFinishedJob, "\(figures)")
        #expect(kept.bytesPerJob > 4 * compacted.bytesPerJob, "\(figures)")
        // Each job left its replay, its result and its owner; nothing else (the run claim
        // was released, nobody followed it).
        #expect(compacted.keySuffixes == ["events": Self.jobs, "meta": Self.jobs, "result": Self.jobs], "\(compacted.keySuffixes)")
    }

    /// Runs `jobs` jobs of `chunks` chunks and measures what they left in Redis once
    /// finished (and, when compacting, once every replay is compacted).
    func measureFinishedJobs(compact: Bool) async throws -> (bytesPerJob: Int, keySuffixes: [String: Int]) {
        var measured: (Int, [String: Int]) = (0, [:])
        try await TestStack.with(mock: MockBehavior(chunks: Self.chunks), configure: { $0.worker.compactFinishedReplay = compact }) { stack in
            let prefix = "mem-\(UUID().uuidString.prefix(8).lowercased())"
            let ids = (0..<Self.jobs).map { "\(prefix)-\($0)" }
            for id in ids {
                try await stack.submit(["id": .string(id), "model": "default", "chat_input": "Tell me a long story"])
            }
            let results = try await stack.waitForResults(Self.jobs)
            #expect(results.values.allSatisfy { $0.status == .succeeded && $0.metrics.outputTokens == Self.chunks })
            if compact {
                try await stack.eventually("every replay is compacted", timeout: .seconds(10)) {
                    for id in ids where try await stack.events(of: id).contains(where: { $0["event"] == "chunk" }) { return false }
                    return true
                }
            } else {
                // What compaction would remove is there: the test measures the difference.
                #expect(try await stack.events(of: ids[0]).filter { $0["event"] == "chunk" }.count >= Self.chunks)
            }
            var keys: [String] = []
            var cursor = "0"
            repeat {
                let reply = try await stack.redis.execute(RedisCommand("SCAN", cursor, "MATCH", "sluice:job:\(prefix)-*", "COUNT", "1000"))
                cursor = reply.array?.first?.string ?? "0"
                keys += reply.array?.last?.array?.compactMap(\.string) ?? []
            } while cursor != "0"
            var total = 0
            var suffixes: [String: Int] = [:]
            for key in keys {
                total += Int(try await stack.redis.execute(RedisCommand("MEMORY", "USAGE", key, "SAMPLES", "0")).int ?? 0)
                let suffix = key.split(separator: ":").last.map(String.init) ?? key
                suffixes[suffix, default: 0] += 1
            }
            measured = (total / Self.jobs, suffixes)
        }
        return measured
    }

    /// A reader arriving after the job finished gets its lifecycle events in seq order,
    /// the final response with the whole reply, and `chat_finished`; resuming from inside
    /// the removed chunks gets the next event kept. A completion relay of the same replay
    /// still gives the whole reply, from the final response.
    @Test func aLateReaderGetsTheLifecycleAndTheWholeResponse() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: Self.chunks), gateway: true, configure: compacting) { stack in
            let submitted = try await stack.call("POST", "/v1/jobs", json: ["model": "default", "chat_input": "Tell me a long story"])
            let id = try #require(submitted.json["id"]?.stringValue)
            var result: JSONValue = .null
            try await stack.eventually("the job finished", timeout: .seconds(30)) {
                result = try await stack.call("GET", "/v1/jobs/\(id)").json["result"] ?? .null
                return result != .null
            }
            try await stack.eventually("the replay is compacted") {
                try await !stack.events(of: id).contains { $0["event"] == "chunk" }
            }
            let output = try #require(result["chat_output"]?.stringValue)
            #expect(!output.isEmpty)
            #expect(result["metrics"]?["output_tokens"]?.intValue == Self.chunks)

            let late = try await stack.call("GET", "/v1/jobs/\(id)/events").events
            #expect(late.map { $0.event ?? "" } == ["chat_started", "chat_completion_request", "chat_completion_response", "chat_finished"])
            let seqs = late.compactMap { $0.id.flatMap { Int($0) } }
            #expect(seqs.count == 4 && seqs.first == 1 && zip(seqs, seqs.dropFirst()).allSatisfy { $0 < $1 }, "\(seqs)")
            // The chunks took the seqs between the request and the response.
            #expect(seqs.count == 4 && seqs[2] - seqs[1] > Self.chunks, "\(seqs)")
            let response = try JSON.decode(JSONValue.self, from: late[2].bytes)
            #expect(response["seq"]?.intValue == seqs[2])
            #expect(response["data"]?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == output)
            #expect(response["data"]?["chat_output"]?.stringValue == output)

            // Resuming after an id the chunks had: the next event kept, with its own id.
            let resumed = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: ["last-event-id": "10"]).events
            #expect(resumed.map { $0.event ?? "" } == ["chat_completion_response", "chat_finished"])
            #expect(resumed.map { $0.id ?? "" } == [String(seqs[2]), String(seqs[3])])
            let afterResponse = try await stack.call("GET", "/v1/jobs/\(id)/events?last_event_id=\(seqs[2])").events
            #expect(afterResponse.map { $0.event ?? "" } == ["chat_finished"])

            // An OpenAI-style relay of the finished job: the final response stands in for
            // the chunks.
            try await withFollower(stack) { follower in
                let feed = try await follower.subscribe(jobID: id)
                var frames = CompletionFrames(style: CompletionStyle(api: "openai", stream: true, includeUsageChunk: true), jobID: id)
                var buffer = ByteBuffer()
                let end = try await feed.follow(afterSeq: 0) { frames.write($0, to: &buffer) }
                #expect(end == .finished)
                let lines = parseSSE(Array(buffer.readableBytesView))
                #expect(lines.last?.data == "[DONE]")
                let chunks = try lines.dropLast().map { try JSON.decode(JSONValue.self, from: $0.bytes) }
                #expect(chunks.allSatisfy { $0["object"] == "chat.completion.chunk" })
                #expect(chunks.map { chunkText($0) }.joined() == output)
                #expect(chunks.contains { $0["choices"]?.arrayValue?.first?["finish_reason"] == "stop" })
                #expect(chunks.last?["usage"]?["completion_tokens"]?.intValue == Self.chunks)
            }
        }
    }

    /// A completion relay that relayed chunks and then finds later ones gone cannot
    /// complete the reply exactly: it says so rather than end it short in silence. One
    /// that relayed every chunk ends as usual.
    @Test func aRelayMissingChunksAfterSomeWereRelayedEndsWithAnError() throws {
        func frames(_ events: [(Int, EventName)]) -> String {
            var frames = CompletionFrames(style: CompletionStyle(api: "openai", stream: true, includeUsageChunk: false), jobID: "j")
            var buffer = ByteBuffer()
            for (seq, name) in events {
                let data = name == .chunk
                    ? #"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}"#
                    : name == .chatCompletionResponse ? #"{"status":"succeeded","choices":[]}"# : "{}"
                let envelope = EventEnvelope.encode(jobID: "j", seq: seq, event: name, data: Array(data.utf8), ts: 0)
                let peek = try! #require(EventEnvelope.peek(envelope))
                frames.write(.event(seq: seq, name: name.rawValue, envelope: envelope, data: peek.data), to: &buffer)
            }
            return String(buffer: buffer)
        }
        let whole = frames([(1, .chatStarted), (2, .chunk), (3, .chunk), (4, .chatCompletionResponse), (5, .chatFinished)])
        #expect(parseSSE(Array(whole.utf8)).map(\.data) == [
            #"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}"#,
            #"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}"#, "[DONE]",
        ])
        let cut = parseSSE(Array(frames([(1, .chatStarted), (2, .chunk), (9, .chatCompletionResponse), (10, .chatFinished)]).utf8))
        #expect(cut.count == 3)
        #expect(cut.last?.data == "[DONE]")
        let error = try JSON.decode(JSONValue.self, from: cut[1].bytes)
        #expect(error["error"]?["code"] == "stream_incomplete")
        #expect(error["error"]?["message"]?.stringValue?.contains("/v1/jobs/j") == true)
    }

    // MARK: The batch lane

    /// Nobody follows a batch-lane job: its lifecycle events go out, its chunks do not,
    /// and its result is whole.
    @Test func aBatchJobNobodyFollowsPublishesNoChunks() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 20), configure: compacting) { stack in
            let id = "quiet-\(UUID().uuidString.prefix(8).lowercased())"
            let published = try await collectChannel(of: id, stack: stack) {
                try await stack.submitRaw(
                    try JSON.encode(["id": .string(id), "model": "default", "chat_input": "x", "priority": "batch"] as JSONValue),
                    key: id, topic: stack.config.kafka.batchRequestsTopic)
            }
            #expect(published.map { $0["event"]?.stringValue ?? "" }
                    == ["chat_started", "chat_completion_request", "chat_completion_response", "chat_finished"])
            // What was published is gap-free: chunks left out took no seq.
            #expect(published.map { $0["seq"]?.intValue ?? 0 } == [1, 2, 3, 4])
            let result = try #require(try await stack.waitForResults(1)[id])
            #expect(result.status == .succeeded)
            #expect(result.metrics.outputTokens == 20)
            #expect(result.chatOutput?.isEmpty == false)
            #expect(published[2]["data"]?["chat_output"]?.stringValue == result.chatOutput)
        }
    }

    /// A relay that subscribes before its batch-lane job is produced (as a streaming
    /// completion does) marks the job followed from the start: every chunk is published
    /// and relayed. With `batch_chunk_events: never` none is, and the final response
    /// stands in for them: the client gets the whole reply either way.
    @Test(arguments: [SluiceConfig.BatchChunkEvents.followed, .never])
    func aBatchJobRelayedFromItsStartGetsTheWholeReply(mode: SluiceConfig.BatchChunkEvents) async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 20), configure: {
            compacting(&$0)
            $0.worker.batchChunkEvents = mode
        }) { stack in
            let id = "relayed-\(UUID().uuidString.prefix(8).lowercased())"
            try await withFollower(stack, marksFollowed: true) { follower in
                var frames = CompletionFrames(style: CompletionStyle(api: "openai", stream: true, includeUsageChunk: false), jobID: id)
                var buffer = ByteBuffer()
                try await follower.follow(jobID: id, afterSeq: 0, onSubscribed: {
                    try await stack.submitRaw(
                        try JSON.encode(["id": .string(id), "model": "default", "chat_input": "x", "priority": "batch"] as JSONValue),
                        key: id, topic: stack.config.kafka.batchRequestsTopic)
                }) { frames.write($0, to: &buffer) }
                let lines = parseSSE(Array(buffer.readableBytesView))
                #expect(lines.last?.data == "[DONE]")
                let chunks = try lines.dropLast().map { try JSON.decode(JSONValue.self, from: $0.bytes) }
                let result = try #require(try await stack.waitForResults(1)[id])
                #expect(result.metrics.outputTokens == 20)
                #expect(chunks.map { chunkText($0) }.joined() == result.chatOutput)
                let content = chunks.filter { !chunkText($0).isEmpty }.count
                switch mode {
                case .never: #expect(content == 1, "the final response standing in")
                default: #expect(content == 20, "the job's own chunks, relayed")
                }
            }
        }
    }

    /// A reader who arrives while a batch-lane job streams gets its chunks from then on:
    /// the worker notices the follow mark within about a second.
    @Test func aBatchJobFollowedMidwayPublishesChunksFromThen() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 60, chunkDelay: .milliseconds(50), firstTokenDelay: .milliseconds(1500)),
                                 gateway: true, configure: compacting) { stack in
            let submitted = try await stack.call("POST", "/v1/jobs", json: [
                "model": "default", "chat_input": "Tell me a story", "priority": "batch",
            ])
            let id = try #require(submitted.json["id"]?.stringValue)
            // The run has started (and looked for a follower) before anyone follows.
            try await stack.eventually("the job started", timeout: .seconds(20)) {
                try await stack.events(of: id).contains { $0["event"] == "chat_completion_request" }
            }
            let events = try await stack.call("GET", "/v1/jobs/\(id)/events").events
            let names = events.map { $0.event ?? "" }
            #expect(names.first == "chat_started")
            #expect(names.last == "chat_finished")
            // The first content chunk came before the worker looked again; later ones after.
            let content = events.filter { $0.event == "chunk" }
                .compactMap { try? JSON.decode(JSONValue.self, from: $0.bytes) }.filter { !chunkText($0["data"]).isEmpty }.count
            #expect(content > 0 && content < 60, "\(content) of 60 content chunks published")
            // Gap-free while live: chunks not published took no seq.
            let seqs = events.compactMap { $0.id.flatMap { Int($0) } }
            #expect(seqs == Array(1...seqs.count), "\(seqs)")
        }
    }

    /// A Redis that lost its script cache under the worker's connection (`SCRIPT FLUSH`)
    /// still runs every script of a job's run (the ownership claim, the usage record, the
    /// compaction, the claim's release): the job succeeds, its usage is counted once, its
    /// replay is compacted and its run claim released.
    @Test func aJobRunsEveryScriptAfterRedisLostItsScriptCache() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 5), configure: compacting) { stack in
            let prefix = "flush-\(UUID().uuidString.prefix(8).lowercased())"
            // The first job loads the scripts on the worker's connection.
            try await stack.submit(["id": .string(prefix + "-1"), "model": "default", "chat_input": "hi"])
            _ = try await stack.waitForResults(1)
            _ = try await stack.redis.execute(RedisCommand("SCRIPT", "FLUSH"))
            let id = prefix + "-2"
            try await stack.submit(["id": .string(id), "model": "default", "chat_input": "hi"])
            let results = try await stack.waitForResults(2)
            #expect(results[id]?.status == .succeeded)
            try await stack.eventually("the job's scripts all ran", timeout: .seconds(10)) {
                let events = try await stack.events(of: id)
                let claimHeld = try await stack.redis.execute(RedisCommand("EXISTS", RedisKeys.run(id))).int
                let counted = try await stack.redis.execute(RedisCommand("HGET", RedisKeys.meta(id), "usage_counted")).string
                return events.last?["event"] == "chat_finished" && !events.contains { $0["event"] == "chunk" }
                    && claimHeld == 0 && counted == "1"
            }
        }
    }

    /// As deployed (the test stack turns compaction off for the other tests).
    func compacting(_ config: inout SluiceConfig) {
        config.worker.compactFinishedReplay = true
    }

    /// Subscribes to the job's channel (with no follow mark), runs `start`, and returns
    /// the events published until `chat_finished`.
    func collectChannel(of jobID: String, stack: TestStack, start: () async throws -> Void) async throws -> [JSONValue] {
        let subscriber = RedisSubscriber(configuration: try RedisConfiguration(url: stack.config.redis.url), logger: TestServices.logger)
        defer { subscriber.shutdown() }
        let subscription = try await subscriber.subscribe(to: RedisKeys.channel(jobID))
        defer { subscription.cancel() }
        try await start()
        var events: [JSONValue] = []
        var batch: [RedisSubscriptionEvent] = []
        while events.last?["event"] != "chat_finished", try await subscription.nextBatch(into: &batch) {
            for case .message(let bytes) in batch { events.append(try JSON.decode(JSONValue.self, from: bytes)) }
        }
        return events
    }

    func withFollower(_ stack: TestStack, marksFollowed: Bool = false, _ body: (JobEventFollower) async throws -> Void) async throws {
        let configuration = try RedisConfiguration(url: stack.config.redis.url)
        let subscriber = RedisSubscriber(configuration: configuration, logger: TestServices.logger)
        defer { subscriber.shutdown() }
        try await body(JobEventFollower(redis: stack.redis, subscriber: subscriber, heartbeat: .seconds(60), marksFollowed: marksFollowed))
    }
}
