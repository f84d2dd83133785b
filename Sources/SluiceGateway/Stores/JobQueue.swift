import Logging
import SluiceKafka
import Synchronization

/// Where the gateway puts jobs and cancels: the requests topics and the control topic.
/// Routes know only this; `KafkaJobQueue` is the real one, and route tests use an
/// in-memory queue.
public protocol JobQueue: Sendable {
    /// Produces `value` keyed by `key` to `topic` and returns once the broker has
    /// acknowledged it. A `KafkaError` whose `isTooLarge` is set means the record can
    /// never fit; any other error, that the queue is not reachable.
    func produce(topic: String, key: String, value: [UInt8], headers: [KafkaHeader]) async throws
    /// Throws unless the queue answers within `timeoutMs` (`/readyz`).
    func ping(timeoutMs: Int32) async throws
    /// Flushes what is in flight and closes the queue's connections.
    func shutdown()
}

/// The job queue on Kafka: one producer for jobs and cancels, and a readiness probe made
/// by the first `/readyz` (an idle gateway keeps no extra connection).
public final class KafkaJobQueue: JobQueue {
    private let producer: KafkaProducer
    private let brokers: String
    private let properties: [String: String]
    private let logger: Logger
    private let probe = Mutex<KafkaProbe?>(nil)
    private let closed = Mutex(false)

    /// `producerProperties` configure the producer, `properties` the probe.
    public init(brokers: String, producerProperties: [String: String], properties: [String: String], logger: Logger) throws {
        self.producer = try KafkaProducer(brokers: brokers, properties: producerProperties, logger: logger)
        self.brokers = brokers
        self.properties = properties
        self.logger = logger
    }

    public func produce(topic: String, key: String, value: [UInt8], headers: [KafkaHeader]) async throws {
        try await producer.send(topic: topic, key: key, value: value, headers: headers)
    }

    public func ping(timeoutMs: Int32) async throws {
        let probe = try self.probe.withLock { probe in
            if let probe { return probe }
            let made = try KafkaProbe(brokers: brokers, properties: properties, logger: logger)
            probe = made
            return made
        }
        try await probe.ping(timeoutMs: timeoutMs)
    }

    public func shutdown() {
        guard !closed.withLock({ was in defer { was = true }; return was }) else { return }
        producer.shutdown(timeoutMs: 5_000)
        probe.withLock { $0 = nil }
    }
}
