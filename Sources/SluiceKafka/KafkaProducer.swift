import Logging
import Synchronization

/// A producer whose `send` returns when the broker has acknowledged the message
/// (`acks=all`), so a caller can commit the input that led to it.
///
/// One thread serves delivery reports (`rd_kafka_poll`); sends never block a task. The
/// same thread watches for a fatal error, after which librdkafka's producer will deliver
/// nothing more: it replaces the client with a new one, and fails every message the old
/// one had not delivered, so that their senders send them again.
public final class KafkaProducer: Sendable {
    private let current: ClientSlot
    private let pollThread: PollThread
    private let logger: Logger

    /// Defaults for reliable delivery; `properties` override them.
    public static let defaultProperties: [String: String] = [
        // Not idempotent. librdkafka's idempotent producer, facing a broker that has lost
        // its producer state (a broker restarted without its data, e.g. Tansu on memory
        // storage), answers UNKNOWN_PRODUCER_ID by bumping its epoch locally, which that
        // broker does not know either: it retries forever and delivers nothing more,
        // without an error the application could see. Sluice's delivery is at least once
        // and keyed by job id, so a retry's duplicate is no new case for a reader.
        "enable.idempotence": "false",
        "acks": "all",
        "linger.ms": "2",
        "log.connection.close": "false",
    ]

    public init(brokers: String, properties: [String: String] = [:], logger: Logger) throws {
        var props = KafkaProducer.defaultProperties
        props["bootstrap.servers"] = brokers
        props.merge(properties, uniquingKeysWith: { $1 })
        let context = RDKafkaContext(logger: logger)
        let current = ClientSlot(try RDKafkaClient(kind: .producer, properties: props, context: context))
        self.current = current
        self.logger = logger
        let properties = props
        self.pollThread = PollThread(name: "sluice-kafka-producer") { isRunning in
            while isRunning() {
                let client = current.client
                client.poll(timeoutMs: 100)
                client.checkOutage()
                if let fatal = client.fatalError() {
                    KafkaProducer.replace(client, in: current, properties: properties, context: context, reason: fatal)
                }
            }
        }
    }

    /// On the poll thread: swaps in a new client, then fails what the old one still held.
    private static func replace(
        _ failed: RDKafkaClient, in current: ClientSlot, properties: [String: String],
        context: RDKafkaContext, reason: String
    ) {
        let fresh: RDKafkaClient
        do {
            fresh = try RDKafkaClient(kind: .producer, properties: properties, context: context)
        } catch {
            // Same properties as a client that was created: not expected. Try again soon.
            context.warnThrottled("replace", "cannot replace the failed Kafka producer, retrying: \(error)")
            failed.poll(timeoutMs: 1_000)
            return
        }
        current.client = fresh
        let pending = failed.outQueueLength
        context.logger.error("the Kafka producer failed (\(reason)); replaced it with a new one; its \(pending) undelivered messages fail and are sent again by their senders")
        failed.purgeAndDrain(timeoutMs: 2_000)
    }

    /// Produces one message and waits for the broker's acknowledgement. Throws a
    /// `KafkaError` if the message could not be delivered; sending again is safe.
    /// Cancelling the task stops the wait (throwing `CancellationError`); the message may
    /// still be delivered.
    public func send(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = []) async throws {
        let client = current.client
        let slot = Mutex<DeliveryPromise?>(nil)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let promise = DeliveryPromise(continuation)
                slot.withLock { $0 = promise }
                if Task.isCancelled {
                    promise.resolve(.failure(CancellationError()))
                    return
                }
                do {
                    try client.produce(topic: topic, key: key, value: value, headers: headers, promise: promise)
                } catch {
                    promise.resolve(.failure(error))
                }
            }
        } onCancel: {
            slot.withLock { $0 }?.resolve(.failure(CancellationError()))
        }
    }

    public func send(topic: String, key: String?, value: [UInt8], headers: [KafkaHeader] = []) async throws {
        try await send(topic: topic, key: key.map { Array($0.utf8) }, value: value, headers: headers)
    }

    /// Waits up to `timeoutMs` for outstanding deliveries, then stops the poll thread.
    /// Messages still undelivered fail their senders.
    public func shutdown(timeoutMs: Int32 = 10_000) {
        let client = current.client
        if !client.flush(timeoutMs: timeoutMs) {
            logger.warning("producer shut down with \(client.outQueueLength) messages undelivered")
        }
        pollThread.stop()
        // Fail what is left and serve the last reports, so no sender is left waiting.
        client.purgeAndDrain(timeoutMs: 1_000)
    }

    /// Raises a fabricated fatal error in the current client (tests of the replacement).
    func injectFatalError() {
        current.client.injectFatalError("injected by a test")
    }
}

/// The producer's current client, replaced after a fatal error.
private final class ClientSlot: Sendable {
    private let mutex: Mutex<RDKafkaClient>
    init(_ client: RDKafkaClient) { mutex = Mutex(client) }
    var client: RDKafkaClient {
        get { mutex.withLock { $0 } }
        set { mutex.withLock { $0 = newValue } }
    }
}
