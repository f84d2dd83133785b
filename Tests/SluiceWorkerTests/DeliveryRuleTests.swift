import SluiceCore
import SluiceKafka
import Testing
@testable import SluiceWorker

/// A job's offset is committed only once its result is acknowledged by the broker:
/// the worker's delivery against a producer whose acknowledgements the test holds.
@Suite(.timeLimit(.minutes(1)))
struct DeliveryRuleTests {
    let tp = TopicPartition(topic: "sluice.requests", partition: 0)

    /// A worker (nothing started) owning `tp`, and a job taken at `offset`.
    func worker(taking offset: Int64) throws -> (Worker, OffsetTracker.Ticket, KafkaMessage) {
        let worker = Worker(config: try SluiceConfig.parse(yaml: ""), logger: quietLogger, environment: [:])
        worker.tracker.withLock { $0.assign([tp], generation: 1) }
        let ticket = try #require(worker.tracker.withLock { $0.begin(tp, generation: 1, offset: offset) })
        let message = KafkaMessage(topic: tp.topic, partition: tp.partition, offset: offset, key: nil, value: [], timestampMs: nil,
                                   generation: 1)
        return (worker, ticket, message)
    }

    func due(_ worker: Worker) -> [Int64] {
        worker.tracker.withLock { $0.commitsDue() }.map(\.1)
    }

    /// How long any one step may take: a delivery waits on acknowledgements the test
    /// holds, outside cooperative cancellation, so a broken rule must end in a failure,
    /// not a hang.
    let step: Duration = .seconds(10)

    @Test func theOffsetWaitsForTheResultsAcknowledgement() async throws {
        let (worker, ticket, message) = try worker(taking: 41)
        let producer = HeldProducer()
        let result = Array(#"{"job_id":"j1","status":"succeeded"}"#.utf8)
        let delivery = Task {
            await worker.deliverResult(result, of: "j1", for: message, ticket: ticket, producer: producer, trace: .untraced)
        }
        try await within(step, "the result's send") { await producer.waitForRecords(1) }
        #expect(producer.records.first?.topic == "sluice.results")
        #expect(producer.records.first?.value == result)
        #expect(due(worker).isEmpty, "the result is sent but not acknowledged: nothing may be committed")
        producer.acknowledge()
        try await within(step, "the acknowledged delivery") { await delivery.value }
        #expect(due(worker) == [42])
    }

    @Test func aFailedDeliveryIsRetriedAndTheOffsetWaitsForIt() async throws {
        let (worker, ticket, message) = try worker(taking: 7)
        let producer = HeldProducer()
        let result = Array(#"{"job_id":"j1","status":"succeeded"}"#.utf8)
        let delivery = Task {
            await worker.deliverResult(result, of: "j1", for: message, ticket: ticket, producer: producer, trace: .untraced)
        }
        try await within(step, "the result's send") { await producer.waitForRecords(1) }
        producer.fail(KafkaError(.delivery, "the broker is away"))
        try await within(step, "the result's second send") { await producer.waitForRecords(2) }
        #expect(producer.records.count == 2 && producer.records[1].value == result,
                "the same result is sent again, not given up for a cut-down one")
        #expect(due(worker).isEmpty, "a failed delivery commits nothing")
        producer.acknowledge()
        try await within(step, "the acknowledged delivery") { await delivery.value }
        #expect(due(worker) == [8])
    }

    /// A result the broker refuses for good (librdkafka's MSG_SIZE_TOO_LARGE, 10) is not
    /// sent again: a cut-down failed result goes in its place. Refused too (a topic not
    /// authorized, 29), the job ends all the same: its offset is committable.
    @Test func aResultRefusedForGoodIsCutDownAndItsJobEndsEvenIfThatIsRefusedToo() async throws {
        let (worker, ticket, message) = try worker(taking: 11)
        let producer = HeldProducer()
        let result = try JSON.encode(UnifiedResponse(
            id: "chatcmpl-1", created: 1, model: "m",
            choices: [CompletionChoice(index: 0, message: .init(role: "assistant", content: "a long answer"), finishReason: "stop")],
            usage: Usage(promptTokens: 10, completionTokens: 3), systemFingerprint: nil, sessionID: nil,
            chatInput: "hi", chatOutput: "a long answer", context: [], provider: "mock", timestamp: 1, parameters: [:],
            metrics: JobMetrics(
                inputTokens: 10, outputTokens: 3, totalTokens: 13, costUSD: nil, latencyS: 1, timeToFirstTokenS: nil,
                interTokenLatencyS: nil, tokensPerSecond: nil, queueWaitS: nil, attempts: 1, usageSource: .provider,
                streamComplete: true),
            jobID: "j1", status: .succeeded, error: nil, metadata: .null))
        let delivery = Task {
            await worker.deliverResult(result, of: "j1", for: message, ticket: ticket, producer: producer, trace: .untraced)
        }
        try await within(step, "the result's send") { await producer.waitForRecords(1) }
        producer.fail(KafkaError(.delivery, "Broker: Message size too large", rdkafkaError: 10))
        try await within(step, "the cut-down result's send") { await producer.waitForRecords(2) }
        let cut = try JSON.decode(UnifiedResponse.self, from: producer.records[1].value)
        #expect(cut.jobID == "j1" && cut.status == .failed && cut.error?.type == "result_too_large", "\(cut)")
        #expect(cut.chatOutput == nil)
        #expect(due(worker).isEmpty, "the cut-down result is not acknowledged yet")
        producer.fail(KafkaError(.delivery, "Broker: Topic authorization failed", rdkafkaError: 29))
        try await within(step, "the refused delivery") { await delivery.value }
        #expect(producer.records.count == 2, "a refusal for good is not retried")
        #expect(due(worker) == [12], "the job ended: its offset is committable")
    }

    @Test func aDeliveryCutOffByShutdownLeavesTheOffsetUncommitted() async throws {
        let (worker, ticket, message) = try worker(taking: 3)
        let producer = HeldProducer()
        let delivery = Task {
            await worker.deliverResult(Array("{}".utf8), of: "j1", for: message, ticket: ticket, producer: producer, trace: .untraced)
        }
        try await within(step, "the result's send") { await producer.waitForRecords(1) }
        delivery.cancel()
        producer.fail(KafkaError(.delivery, "the broker is away"))
        try await within(step, "the cancelled delivery") { await delivery.value }
        #expect(due(worker).isEmpty, "the message is read again by the partition's next owner")
        #expect(producer.records.count == 1, "a cancelled delivery is not tried again")
    }
}
