import Foundation
import SluiceCore
import SluiceHTTPClient
import Testing

/// A per-job provider key given to the gateway crosses Kafka sealed (`kafka.job_key_env`),
/// and the worker opens it: the provider gets the key, the requests record never has it.
@Suite(.needsServices, .timeLimit(.minutes(2)))
struct SecretsAtRestTests {
    static let secret = "sk-at-rest-5e3c"

    static func configure(_ config: inout SluiceConfig) {
        // An Anthropic-format provider with no key of its own: the mock refuses a request
        // without one, so a success proves the job's key reached it.
        config.providers.append(.init(name: "keyless", kind: .anthropic, baseURL: config.providers[0].baseURL))
    }

    @Test func aPerJobKeyCrossesKafkaSealedAndReachesTheProvider() async throws {
        try await TestStack.with(gateway: true, configure: Self.configure) { stack in
            let requests = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.requestsTopic, logger: TestServices.logger)
            defer { requests.close() }
            let answer = try await stack.call("POST", "/api/engine/chat/keyless", json: [
                "api_key": .string(Self.secret), "model": "claude", "chat_input": "hi", "is_stream": false,
            ])
            #expect(answer.status == 200, "\(answer.text)")
            let id = try #require(answer.headers["x-sluice-job-id"])
            let records = try await requests.waitForDistinctKeys(1, timeout: .seconds(20))
            let record = try #require(records.first { $0.keyString == id })
            let text = String(decoding: record.value, as: UTF8.self)
            #expect(!text.contains(Self.secret), "the key is in clear in the requests record")
            let json = try JSON.decode(JSONValue.self, from: record.value)
            #expect(json["api_key"] == nil)
            #expect(json["api_key_sealed"]?.stringValue?.hasPrefix("v1.") == true)
            try await SchemaValidator.expectValid([("job", json)])
        }
    }

    @Test func aGatewayWithoutAJobKeyRefusesPerJobKeys() async throws {
        try await TestStack.with(gateway: true, configure: { Self.configure(&$0); $0.kafka.jobKey = nil }) { stack in
            let answer = try await stack.call("POST", "/api/engine/chat/keyless", json: [
                "api_key": .string(Self.secret), "model": "claude", "chat_input": "hi",
            ])
            #expect(answer.status == 400)
            #expect(answer.json["error"]?["code"] == "api_key_not_accepted")
            #expect(answer.json["error"]?["message"]?.stringValue?.contains("kafka.job_key_env") == true)
            #expect(!answer.text.contains(Self.secret))
            #expect(try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="llmstudio"}"#) ?? 0 == 0)
        }
    }

    @Test func sluiceBatchSendsPerJobKeysSealed() async throws {
        try await TestStack.with(configure: Self.configure) { stack in
            // `sluice batch` sends its jobs to the batch lane.
            let requests = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.batchRequestsTopic, logger: TestServices.logger)
            defer { requests.close() }
            let dir = try TestPaths.tempDir("batch-sealed")
            let input = dir.appendingPathComponent("in.jsonl")
            let output = dir.appendingPathComponent("out.jsonl")
            let line: JSONValue = ["custom_id": "k1", "method": "POST", "url": "/v1/chat/completions", "body": [
                "provider": "keyless", "model": "claude", "api_key": .string(Self.secret),
                "messages": [["role": "user", "content": "hi"]],
            ]]
            try (String(decoding: try JSON.encode(line), as: UTF8.self) + "\n").write(to: input, atomically: true, encoding: .utf8)
            let run = try await BatchTests().batch(stack, dir: dir, input: input, output: output)
            #expect(run.code == 0, "\(run.log)")
            // The keyless provider answers only with the job's key: success proves it arrived.
            let out = try BatchTests().decoded(output)
            #expect(out["k1"]?["response"]?["status_code"]?.intValue == 200, "\(out)")
            let records = try await requests.waitForDistinctKeys(1, timeout: .seconds(20))
            #expect(!records.isEmpty)
            for record in records {
                #expect(!String(decoding: record.value, as: UTF8.self).contains(Self.secret), "the key is in clear in the requests record")
            }
            #expect(!run.log.contains(Self.secret))
        }
    }
}
