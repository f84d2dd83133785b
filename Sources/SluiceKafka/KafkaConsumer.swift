import Logging
import Synchronization

/// A group consumer with manual offset commits.
///
/// One thread polls librdkafka and hands messages to `messages`; the poll loop never
/// waits for a consumer of those messages, so heartbeats and rebalances are served
/// however long a job takes. Back-pressure is by `pause()`: the owner pauses fetching
/// when it has as much work as it wants.
public final class KafkaConsumer: Sendable {
    public enum Rebalance: Sendable {
        case assigned([TopicPartition])
        case revoked([TopicPartition])
    }

    private let client: RDKafkaClient
    private let pollThread: PollThread
    private let delivering: DeliveryGate
    private let logger: Logger
    public let messages: AsyncStream<KafkaMessage>

    /// Settings for a consumer whose offsets are committed by hand, only after the work a
    /// message started is done. `properties` override them.
    public static let defaultProperties: [String: String] = [
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "earliest",
        // A job waiting in the topic is picked up in milliseconds, not after the default
        // 500 ms fetch wait (some brokers, Tansu among them, do not answer a waiting fetch
        // early when a record arrives). Costs more idle fetches; a queue wants low pickup.
        "fetch.wait.max.ms": "10",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "500",
        "log.connection.close": "false",
        "topic.metadata.refresh.interval.ms": "10000",
    ]

    /// - Parameter onRebalance: called on the poll thread when partitions are assigned or
    ///   revoked. For a revoke, it returns the offsets to commit before the partitions go;
    ///   they are committed synchronously.
    public init(
        brokers: String, groupID: String, topics: [String], properties: [String: String] = [:], logger: Logger,
        onRebalance: @escaping @Sendable (Rebalance) -> [TopicPartitionOffset] = { _ in [] }
    ) throws {
        var props = KafkaConsumer.defaultProperties
        props["bootstrap.servers"] = brokers
        props["group.id"] = groupID
        props.merge(properties, uniquingKeysWith: { $1 })

        // The rebalance handler needs the client to commit; the client needs the handler
        // at creation. A box set right after creation closes the loop.
        let clientBox = ClientBox()
        let context = RDKafkaContext(logger: logger) { event in
            switch event {
            case .assigned(let tps):
                _ = onRebalance(.assigned(tps))
            case .revoked(let tps):
                let offsets = onRebalance(.revoked(tps))
                guard !offsets.isEmpty, let client = clientBox.client else { return }
                do {
                    try client.commit(offsets, synchronously: true)
                } catch {
                    logger.warning("commit on revoke failed: \(error)")
                }
            }
        }
        let client = try RDKafkaClient(kind: .consumer, properties: props, context: context)
        clientBox.client = client
        try client.subscribe(topics)

        let (stream, continuation) = AsyncStream.makeStream(of: KafkaMessage.self)
        let delivering = DeliveryGate(continuation)
        self.delivering = delivering
        self.messages = stream
        self.client = client
        self.logger = logger
        self.pollThread = PollThread(name: "sluice-kafka-consumer") { isRunning in
            while isRunning() {
                switch client.consumerPoll(timeoutMs: 100) {
                case .message(let m):
                    context.brokerAnswered()
                    delivering.yield(m)
                case .error(let e):
                    // The same errors repeat while a broker is away or a topic is missing.
                    context.warnThrottled(e, "consumer: \(e)")
                case .none: break
                }
                client.checkOutage()
            }
            client.consumerClose()
            delivering.stop()
        }
    }

    /// Commits offsets (the next offset to read, per partition). Asynchronous by default:
    /// a failure is logged, and a later commit of a higher offset supersedes it.
    public func commit(_ offsets: [TopicPartitionOffset], synchronously: Bool = false) throws {
        try client.commit(offsets, synchronously: synchronously)
    }

    /// Messages behind each assigned partition's end, from what the consumer already
    /// knows (no broker round trip).
    public func lag() -> [(TopicPartition, Int64)] { client.lag() }

    /// Stops fetching from every assigned partition (messages already fetched still arrive).
    public func pause() { client.setPaused(true) }
    public func resume() { client.setPaused(false) }

    /// Ends `messages` but stays in the group, so that work in flight can finish and be
    /// committed before `close()`. Messages fetched after this are dropped; they were
    /// not committed and will be read again.
    public func stopDelivering() {
        delivering.stop()
    }

    /// Leaves the group (the final revoke commits what is done) and ends `messages`.
    public func close() {
        pollThread.stop()
    }
}

private final class ClientBox: @unchecked Sendable {
    // @unchecked: written once, right after the client is created and before the client
    // is subscribed, i.e. before any rebalance callback can read it.
    var client: RDKafkaClient?
}

/// The hand-over from the poll thread to `messages`, closable from any thread.
private final class DeliveryGate: Sendable {
    private let continuation: AsyncStream<KafkaMessage>.Continuation
    private let open = Atomic<Bool>(true)

    init(_ continuation: AsyncStream<KafkaMessage>.Continuation) { self.continuation = continuation }

    func yield(_ message: KafkaMessage) {
        if open.load(ordering: .acquiring) { continuation.yield(message) }
    }

    func stop() {
        open.store(false, ordering: .releasing)
        continuation.finish()
    }
}
