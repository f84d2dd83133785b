import Logging

/// An idempotent producer whose `send` returns when the broker has acknowledged the
/// message (`acks=all`), so a caller can commit the input that led to it.
///
/// One thread serves delivery reports (`rd_kafka_poll`); sends never block a task.
public final class KafkaProducer: Sendable {
    private let client: RDKafkaClient
    private let pollThread: PollThread
    private let logger: Logger

    /// Defaults for reliable delivery; `properties` override them.
    public static let defaultProperties: [String: String] = [
        "enable.idempotence": "true",
        "acks": "all",
        "linger.ms": "2",
        "log.connection.close": "false",
    ]

    public init(brokers: String, properties: [String: String] = [:], logger: Logger) throws {
        var props = KafkaProducer.defaultProperties
        props["bootstrap.servers"] = brokers
        props.merge(properties, uniquingKeysWith: { $1 })
        let client = try RDKafkaClient(kind: .producer, properties: props, context: RDKafkaContext(logger: logger))
        self.client = client
        self.logger = logger
        self.pollThread = PollThread(name: "sluice-kafka-producer") { isRunning in
            while isRunning() { client.poll(timeoutMs: 100) }
        }
    }

    /// Produces one message and waits for the broker's acknowledgement.
    public func send(topic: String, key: [UInt8]?, value: [UInt8]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let promise = DeliveryPromise(continuation)
            do {
                try client.produce(topic: topic, key: key, value: value, promise: promise)
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    public func send(topic: String, key: String?, value: [UInt8]) async throws {
        try await send(topic: topic, key: key.map { Array($0.utf8) }, value: value)
    }

    /// Waits up to `timeoutMs` for outstanding deliveries, then stops the poll thread.
    /// Messages still undelivered fail their senders.
    public func shutdown(timeoutMs: Int32 = 10_000) {
        if !client.flush(timeoutMs: timeoutMs) {
            logger.warning("producer shut down with \(client.outQueueLength) messages undelivered")
        }
        pollThread.stop()
        // Serve the last reports (failures included) so no sender is left waiting.
        client.poll(timeoutMs: 0)
    }
}
