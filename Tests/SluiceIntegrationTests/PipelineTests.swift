import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceKafka
import SluiceMockProvider
import Testing

/// One job, and many, through the real pipeline: Kafka → worker → mock provider over
/// HTTP → Redis → result topic, and the gateway's SSE.
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct PipelineTests {
    @Test func nJobsGiveNResultsWhoseChunksMakeTheOutput() async throws {
        try await TestStack.with { stack in
            let n = 30
            var ids: [String] = []
            for i in 0..<n {
                let id = "job-\(i)-\(UUID().uuidString.prefix(6))"
                ids.append(id)
                // Alternate the request shapes and stream modes the worker runs today.
                let job: JSONValue = i % 3 == 0
                    ? ["id": .string(id), "model": "default", "chat_input": .string("Hello number \(i)"), "stream": .bool(i % 2 == 0)]
                    : ["id": .string(id), "model": .string("mock/mock-\(i % 5 + 1)"), "messages": [["role": "user", "content": .string("Tell me \(i)")]],
                       "temperature": 0.2, "metadata": ["n": .number(Double(i))]]
                try await stack.submit(job)
            }
            let results = try await stack.waitForResults(n)
            #expect(results.count == n)

            for id in ids {
                let result = try #require(results[id], "no result for \(id)")
                #expect(result.status == .succeeded, "\(id): \(String(describing: result.error))")
                #expect(result.jobID == id)
                #expect(result.usage != nil)
                #expect(result.metrics.usageSource == .provider)
                #expect(result.metrics.streamComplete)
                #expect(result.metrics.attempts == 1)
                #expect(result.choices.first?.finishReason == "stop")

                let events = try await stack.events(of: id)
                // seq starts at 1 and has no gaps.
                #expect(events.map { $0["seq"]?.intValue ?? -1 } == Array(1...events.count), "\(id) seq")
                #expect(events.allSatisfy { $0["job_id"]?.stringValue == id })
                let names = events.compactMap { $0["event"]?.stringValue }
                #expect(names.first == "chat_started")
                #expect(names.dropFirst().first == "chat_completion_request")
                #expect(names.suffix(2) == ["chat_completion_response", "chat_finished"])
                #expect(events.last?["data"]?["status"] == "succeeded")
                // The chunks on Redis concatenate to the result's chat_output.
                let text = events.filter { $0["event"] == "chunk" }.map { chunkText($0["data"]) }.joined()
                #expect(!text.isEmpty)
                #expect(text == result.chatOutput, "\(id) chunks vs chat_output")
                // The stored result is the one on the topic.
                let stored = try await stack.redis.execute(.init("GET", RedisKeysForTests.result(id)))
                let storedBytes = try #require(stored.bytes)
                let storedResult = try JSON.decode(UnifiedResponse.self, from: storedBytes)
                #expect(storedResult.chatOutput == result.chatOutput)
            }
        }
    }

    @Test func aFullWorkerResumesFetchingWhenASlotFrees() async throws {
        // Full → partitions paused. When the jobs finish, fetching must resume even though
        // no message is waiting: a second wave submitted later must still run.
        try await TestStack.with(maxInFlight: 2, mock: MockBehavior(chunks: 4, chunkDelay: .milliseconds(50))) { stack in
            for i in 0..<3 { try await stack.submit(["id": .string("wave1-\(i)"), "model": "default", "chat_input": "x"]) }
            _ = try await stack.waitForResults(3, timeout: .seconds(60))
            try await Task.sleep(for: .milliseconds(500))
            for i in 0..<3 { try await stack.submit(["id": .string("wave2-\(i)"), "model": "default", "chat_input": "x"]) }
            let results = try await stack.waitForResults(6, timeout: .seconds(60))
            #expect(results.count == 6)
        }
    }

    @Test func aWorkerGivenMoreJobsThanMaxInFlightFinishesThemAll() async throws {
        try await TestStack.with(maxInFlight: 2, mock: MockBehavior(chunks: 5, chunkDelay: .milliseconds(30))) { stack in
            let ids = (0..<12).map { "slow-\($0)-\(UUID().uuidString.prefix(6))" }
            for id in ids {
                try await stack.submit(["id": .string(id), "model": "default", "chat_input": "slow please"])
            }
            let results = try await stack.waitForResults(ids.count, timeout: .seconds(90))
            #expect(Set(results.keys) == Set(ids))
            #expect(results.values.allSatisfy { $0.status == .succeeded })
            // Never more than two provider streams at once.
            #expect(stack.mock.stats.snapshot.peakActiveStreams <= 2)
            #expect(stack.mock.stats.snapshot.requests == ids.count)
        }
    }

    @Test func malformedMessagesGoToTheDLQAndTheWorkerKeepsGoing() async throws {
        try await TestStack.with { stack in
            let dlq = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.dlqTopic, logger: TestServices.logger)
            defer { dlq.close() }
            try await stack.submitRaw(Array("this is not json".utf8), key: "bad-1")
            try await stack.submitRaw(Array(#"{"id": "bad 2", "messages": 5, "api_key": "sk-dlq-secret"}"#.utf8), key: "bad-2")
            // An id that can be read: a failed result naming the field, not a DLQ record.
            try await stack.submitRaw(Array(#"{"id": "bad-3", "messages": 5, "api_key": "sk-dlq-secret"}"#.utf8), key: "bad-3")
            let good = "good-\(UUID().uuidString.prefix(6))"
            try await stack.submit(["id": .string(good), "model": "default", "chat_input": "still there?"])

            let results = try await stack.waitForResults(2)
            #expect(results[good]?.status == .succeeded)
            #expect(results["bad-3"]?.status == .failed)
            #expect(results["bad-3"]?.error?.type == "invalid_job")
            #expect(results["bad-3"]?.error?.message.contains("\"messages\" must be an array") == true)
            #expect(!String(decoding: try JSON.encode(try #require(results["bad-3"])), as: UTF8.self).contains("sk-dlq-secret"))

            let records = try await dlq.waitForDistinctKeys(2, timeout: .seconds(30))
            let byKey = Dictionary(uniqueKeysWithValues: records.map { ($0.keyString ?? "", $0) })
            let firstRecord = try #require(byKey["bad-1"])
            let first = try JSON.decode(JSONValue.self, from: firstRecord.value)
            #expect(first["error"]?.stringValue?.contains("not valid JSON") == true)
            #expect(first["topic"]?.stringValue == stack.config.kafka.requestsTopic)
            #expect(first["partition"]?.intValue != nil)
            #expect(first["offset"]?.intValue != nil)
            #expect(first["key"] == "bad-1")
            #expect(first["at"]?.stringValue != nil)
            let base64 = try #require(first["value_base64"]?.stringValue)
            let original = try #require(Data(base64Encoded: base64))
            #expect(String(decoding: original, as: UTF8.self) == "this is not json")

            let secondRecord = try #require(byKey["bad-2"])
            let second = try JSON.decode(JSONValue.self, from: secondRecord.value)
            #expect(second["error"]?.stringValue?.contains("\"id\" must be 1 to 128 characters") == true)
            // The DLQ keeps the message but not its secret.
            let secondValue = String(decoding: Data(base64Encoded: second["value_base64"]?.stringValue ?? "") ?? Data(), as: UTF8.self)
            #expect(secondValue.contains("\"messages\""))
            #expect(!secondValue.contains("sk-dlq-secret"))
        }
    }

    @Test func unknownModelGivesAFailedResultNotACrash() async throws {
        try await TestStack.with { stack in
            let id = "unknown-\(UUID().uuidString.prefix(6))"
            try await stack.submit(["id": .string(id), "model": "no-such-model", "chat_input": "hi"])
            let results = try await stack.waitForResults(1)
            let result = try #require(results[id])
            #expect(result.status == .failed)
            #expect(result.error?.type == "unknown_model")
            #expect(result.error?.message.contains("no-such-model") == true)
            let names = try await stack.events(of: id).compactMap { $0["event"]?.stringValue }
            #expect(names == ["chat_response_failure", "chat_finished"])
        }
    }

    @Test func aLateSSEReaderGetsEveryEventAndCanResume() async throws {
        try await TestStack.with(gateway: true) { stack in
            let id = "late-\(UUID().uuidString.prefix(6))"
            try await stack.submit(["id": .string(id), "model": "default", "chat_input": "hello late reader"])
            _ = try await stack.waitForResults(1)
            let stored = try await stack.events(of: id)

            let (status, body) = try await stack.get("/v1/jobs/\(id)/events")
            #expect(status == 200)
            let events = parseSSE(body)
            #expect(events.map(\.id) == stored.map { "\($0["seq"]?.intValue ?? 0)" })
            #expect(events.map(\.event) == stored.map { $0["event"]?.stringValue })
            #expect(events.last?.event == "chat_finished")
            // data is the event envelope, as published.
            let firstData = try JSON.decode(JSONValue.self, from: Array(events[0].data.utf8))
            #expect(firstData == stored[0])

            // Resuming after event 3 gives exactly the rest.
            let (_, resumed) = try await stack.get("/v1/jobs/\(id)/events", headers: ["last-event-id": "3"])
            #expect(parseSSE(resumed).map(\.id) == stored.dropFirst(3).map { "\($0["seq"]?.intValue ?? 0)" })
        }
    }

    @Test func gatewaySubmitsAJobAndStreamsItLive() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 12, chunkDelay: .milliseconds(25)), gateway: true) { stack in
            let (status, accepted) = try await stack.post("/v1/jobs", json: [
                "model": "default", "messages": [["role": "user", "content": "stream to me"]], "stream": true,
            ])
            #expect(status == 202)
            let id = try #require(accepted["id"]?.stringValue)
            #expect(accepted["events_url"]?.stringValue == "/v1/jobs/\(id)/events")
            #expect(accepted["status_url"]?.stringValue == "/v1/jobs/\(id)")

            // Follow live: the stream ends by itself after chat_finished.
            let (eventsStatus, body) = try await stack.get("/v1/jobs/\(id)/events")
            #expect(eventsStatus == 200)
            let events = parseSSE(body)
            #expect(events.map(\.id) == (1...events.count).map { "\($0)" })
            #expect(events.filter { $0.event == "chunk" }.count >= 12)
            #expect(events.last?.event == "chat_finished")

            let (jobStatus, jobBody) = try await stack.get("/v1/jobs/\(id)")
            #expect(jobStatus == 200)
            let job = try JSON.decode(JSONValue.self, from: jobBody)
            #expect(job["status"] == "succeeded")
            #expect(job["result"]?["job_id"]?.stringValue == id)
            let text = events.filter { $0.event == "chunk" }
                .map { chunkText((try? JSON.decode(JSONValue.self, from: Array($0.data.utf8)))?["data"]) }.joined()
            #expect(text == job["result"]?["chat_output"]?.stringValue)
        }
    }

    @Test func gatewayRejectsBadRequestsByName() async throws {
        try await TestStack.with(gateway: true) { stack in
            let (s1, e1) = try await stack.post("/v1/jobs", json: ["model": "default"])
            #expect(s1 == 400)
            #expect(e1["error"]?["message"]?.stringValue?.contains("no request") == true)
            let (s2, e2) = try await stack.post("/v1/jobs", json: ["model": "nope", "chat_input": "x"])
            #expect(s2 == 400)
            #expect(e2["error"]?["message"]?.stringValue?.contains("nope") == true)
            let (s3, _) = try await stack.get("/v1/jobs/does-not-exist")
            #expect(s3 == 404)
            let (s4, _) = try await stack.get("/v1/jobs/does-not-exist/events")
            #expect(s4 == 404)
        }
    }
}

enum RedisKeysForTests {
    static func result(_ id: String) -> String { RedisKeys.result(id) }
}
