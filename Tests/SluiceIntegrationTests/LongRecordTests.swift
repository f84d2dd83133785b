import Foundation
import SluiceCore
import SluiceKafka
import SluiceRedis
import Testing

/// Records larger than Kafka's defaults: a long prompt runs end to end, a request too
/// large for the queue is a 413, and a record the broker refuses for good ends its job
/// with a cut-down record instead of holding its partition.
@Suite(.needsServices, .timeLimit(.minutes(4)))
struct LongRecordTests {
    /// Two MiB of prompt, past librdkafka's default 1 MB message limit.
    static let longPrompt = String(repeating: "A long context line, one of many. ", count: (2 << 20) / 34 + 1)

    @Test func longPromptsUpToTheBodyLimitRunThroughTheGatewayAndResultsDoNotRepeatThem() async throws {
        try await TestStack.with(gateway: true) { stack in
            #expect(Self.longPrompt.utf8.count >= 2 << 20)
            let completion = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "default", "messages": [["role": "user", "content": .string(Self.longPrompt)]],
            ])
            #expect(completion.status == 200, "\(completion.text.prefix(300))")
            #expect(completion.json["status"] == "succeeded")
            #expect(completion.json["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue?.isEmpty == false)
            #expect(completion.json["input_omitted"] == true)
            #expect(completion.json["context"] == [])
            #expect(completion.json["chat_input"] == .null)

            // The largest body the gateway accepts (gateway.max_body_bytes, 4 MiB), less
            // the JSON around the prompt.
            let largest = String(String(repeating: Self.longPrompt, count: 2).prefix(stack.config.gateway.maxBodyBytes - 64))
            let body = try JSON.encode(["model": "default", "chat_input": .string(largest)] as JSONValue)
            #expect(body.count <= stack.config.gateway.maxBodyBytes && body.count > stack.config.gateway.maxBodyBytes - 100)
            let accepted = try await stack.call("POST", "/v1/jobs", body: body)
            #expect(accepted.status == 202, "\(accepted.text.prefix(300))")
            let jobID = try #require(accepted.json["id"]?.stringValue ?? accepted.json["job_id"]?.stringValue)
            let results = try await stack.waitForResults(2)
            let result = try #require(results[jobID])
            #expect(result.status == .succeeded)
            #expect(result.inputOmitted == true)
            #expect(result.usage?.promptTokens ?? 0 > 1_000_000, "the provider saw the whole prompt")
            // Neither result on the topic repeats the prompt, nor do the job's events.
            #expect(stack.results.all.allSatisfy { $0.value.count < 64 * 1024 })
            let events = try await stack.events(of: jobID)
            let sent = try #require(events.first { $0["event"] == "chat_completion_request" }?["data"])
            #expect(sent["body"] == .null && sent["body_omitted"] == true)
            #expect(sent["body_bytes"]?.intValue ?? 0 > 4 << 20 - 100)
            #expect(try events.allSatisfy { try JSON.encode($0).count < 64 * 1024 })
            try await SchemaValidator.expectValid([("result", try JSON.decode(JSONValue.self, from: try JSON.encode(result)))]
                + events.map { ("event", $0) })
        }
    }

    @Test func aRequestLargerThanTheQueueTakesIs413NamingTheLimit() async throws {
        try await TestStack.with(gateway: true, worker: false, configure: { $0.kafka.maxMessageBytes = 1 << 20 }) { stack in
            let answer = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "default", "messages": [["role": "user", "content": .string(Self.longPrompt)]],
            ])
            #expect(answer.status == 413)
            #expect(answer.json["error"]?["code"] == "request_too_large")
            #expect(answer.json["error"]?["message"]?.stringValue?.contains("kafka.max_message_bytes is 1048576") == true)
        }
    }

    /// Records of 64 KiB at most; a job's result is larger (it echoes a 48 KiB prompt
    /// twice). The worker's producer refuses it (Tansu does not enforce a topic's
    /// `max.message.bytes`; a Kafka broker's refusal is the same permanent error, in the
    /// delivery report). The job ends with a cut-down `failed` result, its offset is
    /// committed, and the worker goes on. The DLQ refusing a record too large is handled
    /// the same way, and a secret in a broken message is masked there.
    @Test func recordsTheBrokerRefusesForGoodAreCutDownAndTheirJobsEnd() async throws {
        let limit = 64 * 1024
        try await TestStack.with(maxInFlight: 1, configure: { c in
            c.worker.echoInputMaxBytes = 1 << 20
            // The worker's producer, and the broker's topics, take 64 KiB records.
            c.kafka.maxMessageBytes = limit
        }) { stack in
            let dlq = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.dlqTopic, logger: TestServices.logger)
            defer { dlq.close() }
            let prompt = String(repeating: "p", count: 48 * 1024)
            try await stack.submit(["id": "big", "model": "default", "chat_input": .string(prompt)])
            // Not JSON, and 60 KiB: its DLQ record (base64) is over the limit.
            try await stack.submitRaw(Array(repeating: UInt8(ascii: "x"), count: 60 * 1024), key: "huge-garbage")
            try await stack.submitRaw(Array(#"{"id": "leak", "api_key": "sk-abc123planted-secret", broken"#.utf8), key: "leak")
            // With one slot, the next job runs only once the big one let go of it.
            try await stack.submit(["id": "next", "model": "default", "chat_input": "and now?"])

            let results = try await stack.waitForResults(2)
            let big = try #require(results["big"])
            #expect(big.status == .failed)
            #expect(big.error?.type == "result_too_large")
            let message = big.error?.message ?? ""
            #expect(message.contains("kafka.max_message_bytes is \(limit)"), "\(message)")
            #expect(message.contains("sluice:job:big:result"), "\(message)")
            #expect(big.context.isEmpty && big.chatInput == nil && big.choices.isEmpty)
            #expect(big.usage != nil, "what the job cost is kept")
            #expect(results["next"]?.status == .succeeded)

            // The full result is in Redis, as the job's readers saw it.
            let stored = try #require(try await stack.redis.execute(RedisCommand("GET", RedisKeys.result("big"))).bytes)
            let full = try JSON.decode(UnifiedResponse.self, from: stored)
            #expect(full.status == .succeeded)
            #expect(full.chatInput == prompt)
            #expect(stored.count > limit)

            let records = try await dlq.waitForDistinctKeys(2, timeout: .seconds(30))
            let byKey = Dictionary(records.map { ($0.keyString ?? "", $0) }, uniquingKeysWith: { $1 })
            let garbage = try JSON.decode(JSONValue.self, from: try #require(byKey["huge-garbage"]).value)
            #expect(garbage["value_truncated"] == true)
            #expect(garbage["value_bytes"] == .number(Double(60 * 1024)))
            #expect(garbage["error"]?.stringValue?.contains("not valid JSON") == true)
            let kept = try #require(Data(base64Encoded: garbage["value_base64"]?.stringValue ?? ""))
            #expect(kept.count == 16 * 1024)
            let leak = try JSON.decode(JSONValue.self, from: try #require(byKey["leak"]).value)
            let leakValue = String(decoding: try #require(Data(base64Encoded: leak["value_base64"]?.stringValue ?? "")), as: UTF8.self)
            #expect(leakValue == #"{"id": "leak", "api_key": "***", broken"#)
            try await SchemaValidator.expectValid([
                ("result", try JSON.decode(JSONValue.self, from: try JSON.encode(big))), ("dlq", garbage), ("dlq", leak),
            ])

            // Every job's offset is committed: the group has nothing left on any partition.
            let lag = try await stack.waitForNoLag()
            #expect(lag.count == 3 && lag.values.allSatisfy { $0 == 0 }, "lag per partition: \(lag)")
        }
    }
}
