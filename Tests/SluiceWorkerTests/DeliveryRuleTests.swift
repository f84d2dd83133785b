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

    @Test func theOffsetWaitsForTheResultsAcknowledgement() async throws {
        let (worker, ticket, message) = try worker(taking: 41)
        let producer = HeldProducer()
        let result = Array(#"{"job_id":"j1","status":"succeeded"}"#.utf8)
        let delivery = Task {
            await worker.deliverResult(result, of: "j1", for: message, ticket: ticket, producer: producer, trace: .untraced)
        }
        await producer.waitForRecords(1)
        #expect(producer.records.first?.topic == "sluice.results")
        #expect(producer.records.first?.value == result)
        #expect(due(worker).isEmpty, "the result is sent but not acknowledged: nothing may be committed")
        producer.acknowledge()
        await delivery.value
        #expect(due(worker) == [42])
    }

    @Test func aFailedDeliveryIsRetriedAndTheOffsetWaitsForIt() async throws {
        let (worker, ticket, message) = try worker(taking: 7)
        let producer = HeldProducer()
        let delivery = Task {
            await worker.deliverResult(Array("{}".utf8), of: "j1", for: message, ticket: ticket, producer: producer, trace: .untraced)
        }
        await producer.waitForRecords(1)
        producer.fail(KafkaError(.delivery, "the broker is away"))
        await producer.waitForRecords(2)
        #expect(due(worker).isEmpty, "a failed delivery commits nothing")
        producer.acknowledge()
        await delivery.value
        #expect(due(worker) == [8])
    }

    @Test func aDeliveryCutOffByShutdownLeavesTheOffsetUncommitted() async throws {
        let (worker, ticket, message) = try worker(taking: 3)
        let producer = HeldProducer()
        let delivery = Task {
            await worker.deliverResult(Array("{}".utf8), of: "j1", for: message, ticket: ticket, producer: producer, trace: .untraced)
        }
        await producer.waitForRecords(1)
        delivery.cancel()
        producer.fail(KafkaError(.delivery, "the broker is away"))
        await delivery.value
        #expect(due(worker).isEmpty, "the message is read again by the partition's next owner")
        #expect(producer.records.count == 1, "a cancelled delivery is not tried again")
    }
}
