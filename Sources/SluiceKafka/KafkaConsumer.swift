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
        /// Partitions now owned; their messages carry `generation` until they are revoked.
        case assigned([TopicPartition], generation: UInt64)
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
        // Incremental rebalances: a worker joining or leaving moves only the partitions
        // that change hands, and jobs running on the others are not interrupted.
        "partition.assignment.strategy": "cooperative-sticky",
    ]

    /// - Parameter onRebalance: called on the poll thread when partitions are assigned or
    ///   revoked. It returns offsets to commit first (for a revoke, what is done on the
    ///   partitions that go); they are committed synchronously.
    /// - Parameter onCommit: the broker's answer to each commit, per partition (`true`:
    ///   taken), on the poll thread.
    public convenience init(
        brokers: String, groupID: String, topics: [String], properties: [String: String] = [:], logger: Logger,
        onRebalance: @escaping @Sendable (Rebalance) -> [TopicPartitionOffset] = { _ in [] },
        onCommit: @escaping @Sendable ([(TopicPartitionOffset, Bool)]) -> Void = { _ in }
    ) throws {
        var props = KafkaConsumer.defaultProperties
        props["bootstrap.servers"] = brokers
        props["group.id"] = groupID
        props.merge(properties, uniquingKeysWith: { $1 })

        // The rebalance handler needs the client to commit; the client needs the handler
        // at creation. A box set right after creation closes the loop.
        let clientBox = ClientBox()
        let context = RDKafkaContext(logger: logger, onRebalance: { event in
            let offsets: [TopicPartitionOffset]
            switch event {
            case .assigned(let tps, let generation):
                offsets = onRebalance(.assigned(tps, generation: generation))
            case .revoked(let tps):
                offsets = onRebalance(.revoked(tps))
            }
            guard !offsets.isEmpty, let client = clientBox.client else { return }
            do {
                try client.commit(offsets, synchronously: true)
            } catch {
                logger.warning("commit on rebalance failed: \(error)")
            }
        }, onCommit: onCommit)
        let client = try RDKafkaClient(kind: .consumer, properties: props, context: context)
        clientBox.client = client
        try client.subscribe(topics)
        self.init(client: client, context: context, logger: logger, threadName: "sluice-kafka-consumer", setUp: nil)
    }

    /// A consumer of every partition of `topic`, without a group (nothing to join, nothing
    /// left behind on the broker, nothing committed): each partition is read from the
    /// first message at or after `fromTimestampMs`. For topics every process reads whole,
    /// such as the control topic. Waits for the topic to exist.
    public convenience init(
        brokers: String, reading topic: String, fromTimestampMs: Int64, properties: [String: String] = [:], logger: Logger
    ) throws {
        var props = KafkaConsumer.defaultProperties
        props["bootstrap.servers"] = brokers
        props.merge(properties, uniquingKeysWith: { $1 })
        // No group: these only apply to group members (librdkafka warns about them).
        for key in ["session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy",
                    "group.instance.id", "max.poll.interval.ms", "group.protocol", "group.remote.assignor"] {
            props[key] = nil
        }
        // librdkafka wants a group id even to assign partitions by hand. This one is never
        // joined (no subscribe) and never committed to, so the broker never holds it.
        props["group.id"] = "sluice-reader-unjoined"
        props["enable.auto.commit"] = "false"
        props["enable.auto.offset.store"] = "false"
        let context = RDKafkaContext(logger: logger)
        let client = try RDKafkaClient(kind: .consumer, properties: props, context: context)
        // Until the topic exists (a worker may start before `sluice topics`), tried again
        // once a second from the poll loop.
        self.init(client: client, context: context, logger: logger, threadName: "sluice-kafka-reader") { client in
            client.assignAll(topic: topic, fromTimestampMs: fromTimestampMs)
        }
    }

    /// - Parameter setUp: run on the poll thread once a second until it answers true.
    private init(
        client: RDKafkaClient, context: RDKafkaContext, logger: Logger, threadName: String,
        setUp: (@Sendable (RDKafkaClient) -> Bool)?
    ) {
        let (stream, continuation) = AsyncStream.makeStream(of: KafkaMessage.self)
        let delivering = DeliveryGate(continuation)
        self.delivering = delivering
        self.messages = stream
        self.client = client
        self.logger = logger
        self.pollThread = PollThread(name: threadName) { isRunning in
            var setUpDone = setUp == nil
            var lastTry = ContinuousClock.now - .seconds(2)
            while isRunning() {
                if setUp != nil, setUpDone, context.outage.isDown {
                    // librdkafka (2.14) can crash when a broker comes back with a hand-
                    // assigned topic re-created under a new id: let go of the assignment
                    // while the brokers are away, and make it again once they answer.
                    client.unassignAll()
                    setUpDone = false
                }
                if !setUpDone, let setUp, !context.outage.isDown, ContinuousClock.now - lastTry >= .seconds(1) {
                    lastTry = ContinuousClock.now
                    setUpDone = setUp(client)
                }
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
