import Foundation
import SluiceCore
import SluiceKafka
import Testing

/// Record sizes: one config value sizing producers, consumers and topics; results that
/// do not repeat a long input; the cut-down result that replaces one too large.
@Suite struct RecordSizeTests {
    func response(prompt: String, output: String = "ok") -> UnifiedResponse {
        UnifiedResponse(
            id: "chatcmpl-1", created: 1, model: "m",
            choices: [CompletionChoice(index: 0, message: .init(role: "assistant", content: output), finishReason: "stop")],
            usage: Usage(promptTokens: 10, completionTokens: 2), systemFingerprint: nil, sessionID: "s",
            chatInput: prompt, chatOutput: output, context: [["role": "user", "content": .string(prompt)]], provider: "mock",
            timestamp: 1, parameters: ["temperature": 0.5], metrics: JobMetrics(
                inputTokens: 10, outputTokens: 2, totalTokens: 12, costUSD: nil, latencyS: 1, timeToFirstTokenS: nil,
                interTokenLatencyS: nil, tokensPerSecond: nil, queueWaitS: nil, attempts: 1, usageSource: .provider,
                streamComplete: true),
            jobID: "job-1", status: .succeeded, error: nil, metadata: ["team": "a"], raw: ["big": .string(output)])
    }

    @Test func oneValueSizesProducerConsumerAndTopics() throws {
        let c = try SluiceConfig.parse(yaml: "")
        #expect(c.kafka.maxMessageBytes == 8 * 1024 * 1024)
        #expect(c.kafka.maxMessageBytes >= c.gateway.maxBodyBytes + SluiceConfig.Kafka.envelopeBytes)
        #expect(c.worker.maxJobBytes == c.kafka.maxMessageBytes)
        #expect(c.kafka.producerProperties["message.max.bytes"] == "8388608")
        #expect(c.kafka.consumerProperties["max.partition.fetch.bytes"] == "8388608")
        #expect(Int(c.kafka.consumerProperties["fetch.max.bytes"]!)! >= c.kafka.maxMessageBytes)
        #expect(c.kafka.topicConfig == ["max.message.bytes": "8388608"])

        let big = try SluiceConfig.parse(yaml: "kafka: { max_message_bytes: 67108864, properties: { linger.ms: '5' } }")
        #expect(big.worker.maxJobBytes == 64 << 20, "the worker's job limit follows the queue's")
        #expect(big.kafka.producerProperties == ["message.max.bytes": "67108864", "linger.ms": "5"])
        // librdkafka refuses a client whose response limit is below its fetch limit.
        let fetch = Int(big.kafka.consumerProperties["fetch.max.bytes"]!)!
        #expect(Int(big.kafka.consumerProperties["receive.message.max.bytes"]!)! >= fetch + 512)
        // kafka.properties still wins.
        let own = try SluiceConfig.parse(yaml: "kafka: { properties: { message.max.bytes: '9000000' } }")
        #expect(own.kafka.producerProperties["message.max.bytes"] == "9000000")
        let set = try SluiceConfig.parse(yaml: "worker: { max_job_bytes: 1000 }")
        #expect(set.worker.maxJobBytes == 1000)
    }

    @Test func aQueueTooSmallForTheGatewaysBodiesIsAConfigError() {
        #expect {
            try SluiceConfig.parse(yaml: "gateway: { max_body_bytes: 16777216 }")
        } throws: { error in
            let message = (error as? SluiceError)?.message ?? ""
            return message.contains("kafka.max_message_bytes") && message.contains("gateway.max_body_bytes")
        }
        #expect(throws: SluiceError.self) { try SluiceConfig.parse(yaml: "kafka: { max_message_bytes: 2000000000 }") }
    }

    @Test func aLongInputIsNotEchoed() throws {
        var small = response(prompt: "hi")
        small.omitInput(largerThan: 64 * 1024)
        #expect(small.chatInput == "hi")
        #expect(small.context.count == 1)
        #expect(small.inputOmitted == nil)
        #expect(!String(decoding: try JSON.encode(small), as: UTF8.self).contains("input_omitted"))

        let prompt = String(repeating: "long context ", count: 200_000)
        var large = response(prompt: prompt)
        large.omitInput(largerThan: 64 * 1024)
        #expect(large.chatInput == nil)
        #expect(large.context.isEmpty)
        #expect(large.inputOmitted == true)
        let json = try JSON.encode(large)
        #expect(json.count < 4096)
        let decoded = try JSON.decode(UnifiedResponse.self, from: json)
        #expect(decoded.inputOmitted == true)
        #expect(try JSONValue.parse(json)["input_omitted"] == true)
        #expect(decoded.chatOutput == "ok")

        // Many messages, each small, add up too.
        var many = response(prompt: "x")
        many.chatInput = "x"
        many.context = Array(repeating: ["role": "user", "content": .string(String(repeating: "y", count: 1000))], count: 100)
        many.omitInput(largerThan: 64 * 1024)
        #expect(many.inputOmitted == true)
    }

    @Test func theCutDownResultIsSmallFailedAndSaysWhy() throws {
        let output = String(repeating: "z", count: 3 << 20)
        var full = response(prompt: "p", output: output)
        full.metadata = ["blob": .string(String(repeating: "m", count: 100_000))]
        let fullBytes = try JSON.encode(full).count
        let error = UnifiedResponse.refusedError(
            tooLarge: true, reason: "Broker: Message size too large", resultBytes: fullBytes, limitBytes: 1_048_576,
            jobID: "job-1", keptSeconds: 3600)
        let cut = full.cutDown(error: error)
        let json = try JSON.encode(cut)
        #expect(json.count < 8 * 1024)
        #expect(cut.status == .failed)
        #expect(cut.error?.type == "result_too_large")
        #expect(cut.error?.message.contains("\(fullBytes) bytes") == true)
        #expect(cut.error?.message.contains("1048576") == true)
        #expect(cut.error?.message.contains("sluice:job:job-1:result") == true)
        #expect(cut.choices.isEmpty && cut.chatOutput == nil && cut.raw == nil && cut.context.isEmpty)
        #expect(cut.chatInput == nil && cut.inputOmitted == true, "the input is left out, and says so")
        #expect(cut.metadata == .null, "metadata this large is left out")
        #expect(cut.parameters == ["temperature": 0.5], "small parameters are kept")
        #expect(cut.usage?.totalTokens == 12, "what the job cost is kept")
        #expect(cut.jobID == "job-1")
        let decoded = try JSON.decode(UnifiedResponse.self, from: json)
        #expect(decoded.error == error)

        let rejected = UnifiedResponse.refusedError(
            tooLarge: false, reason: "Broker: Topic authorization failed", resultBytes: 10, limitBytes: 1_048_576,
            jobID: "job-1", keptSeconds: 3600)
        #expect(rejected.type == "result_rejected")
        #expect(rejected.message.contains("Topic authorization failed") && rejected.message.contains("sluice:job:job-1:result"))
    }

    @Test func produceErrorsThatCannotBeRetriedArePermanent() {
        // librdkafka's codes: MSG_SIZE_TOO_LARGE 10, RECORD_LIST_TOO_LARGE 18,
        // INVALID_RECORD 87, TOPIC_AUTHORIZATION_FAILED 29, TOPIC_EXCEPTION 17.
        for code: Int32 in [10, 18] {
            #expect(KafkaError(.delivery, "", rdkafkaError: code).isPermanent)
            #expect(KafkaError(.produce, "", rdkafkaError: code).isTooLarge)
        }
        for code: Int32 in [87, 29, 17] {
            #expect(KafkaError(.delivery, "", rdkafkaError: code).isPermanent)
            #expect(!KafkaError(.delivery, "", rdkafkaError: code).isTooLarge)
        }
        // _MSG_TIMED_OUT -192, _TRANSPORT -195, NOT_LEADER_FOR_PARTITION 6,
        // REQUEST_TIMED_OUT 7, _PURGE_QUEUE -152: worth retrying.
        for code: Int32 in [-192, -195, 6, 7, -152] {
            #expect(!KafkaError(.delivery, "", rdkafkaError: code).isPermanent)
        }
        #expect(!KafkaError(.delivery, "no code").isPermanent)
        #expect(!KafkaError(.commit, "", rdkafkaError: 10).isPermanent, "only produce errors are classified")
    }
}
