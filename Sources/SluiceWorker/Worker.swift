import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceHTTPClient
import SluiceKafka
import SluiceProviders
import SluiceRedis
import Synchronization

/// `sluice worker`: consumes jobs, runs them, publishes their events and results.
///
/// The consumer's poll thread never waits for a job. Each job runs as a child task; when
/// `max_in_flight` are running, the partitions are paused until one finishes. A job's
/// offset becomes committable only once its result is acknowledged by the broker, and a
/// partition commits only up to its lowest job not yet done (`OffsetTracker`).
///
/// On graceful shutdown the worker stops taking messages, gives running jobs
/// `worker.drain_s` to finish, cancels the rest (uncommitted, so they are read again by
/// whichever worker gets the partition), commits, and leaves the group.
public final class Worker: Service {
    private let config: SluiceConfig
    private let logger: Logger
    private let environment: [String: String]
    private let tracker = SharedTracker()
    private let cancels: CancelRegistry
    /// Every job in flight retries its result while the broker is away: one line per
    /// topic per 30 s, not one per retry.
    private let deliveryFailures = LogThrottle()

    public let metrics: WorkerMetrics

    public init(config: SluiceConfig, logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment,
                metrics: WorkerMetrics = WorkerMetrics()) {
        self.config = config
        self.logger = logger
        self.environment = environment
        self.metrics = metrics
        self.cancels = CancelRegistry(ttlSeconds: Double(config.redis.eventTTLSeconds))
    }

    public func run() async throws {
        let kafka = config.kafka
        let redisConfig = try RedisConfiguration(url: config.redis.url)
        let redis = RedisConnection(configuration: redisConfig, logger: logger)
        // Room for a connection per job in flight (each provider request holds one over
        // HTTP/1.1), so none is closed and reopened between jobs.
        let http = HTTPClient(logger: logger, maxConnections: max(1024, config.worker.maxInFlight))
        let producer = try KafkaProducer(brokers: kafka.brokers, properties: kafka.properties, logger: logger)
        let tracker = self.tracker
        let logger = self.logger
        let consumer = try KafkaConsumer(
            brokers: kafka.brokers, groupID: kafka.groupID, topics: [kafka.requestsTopic],
            properties: kafka.properties, logger: logger
        ) { event in
            switch event {
            case .assigned:
                return []
            case .revoked(let tps):
                // Commit what is done before the partitions go; jobs still running on them
                // finish, but their offsets are no longer ours to commit.
                let due = tracker.withLock { $0.revoke(tps) }
                return due.map { TopicPartitionOffset($0.0, offset: $0.1) }
            }
        }
        // Every worker reads every cancel: a group of its own, from the start of the
        // topic's retention, ignoring cancels older than the event TTL.
        let control = try KafkaConsumer(
            brokers: kafka.brokers, groupID: "\(kafka.groupID)-control-\(UUID().uuidString.lowercased())",
            topics: [kafka.controlTopic], properties: kafka.properties, logger: logger)
        let keyring = try JobKeyring.from(config.kafka, environment: environment)
        let runner = JobRunner(
            config: config, providers: ProviderRunner(client: http), redis: redis,
            prices: PriceTable(overrides: config.pricing), logger: logger, environment: environment, metrics: metrics)
        let limiter = InFlightLimiter(limit: config.worker.maxInFlight)
        // Connect to Redis before the first job (it connects lazily); if it is down, the
        // worker still runs jobs and events follow when it is back.
        if (try? await redis.execute(RedisCommand("PING"))) == nil {
            logger.warning("Redis at \(redisConfig) is not reachable; jobs run, events resume when it is back")
        }

        logger.info("worker started", metadata: [
            "brokers": "\(kafka.brokers)", "topic": "\(kafka.requestsTopic)", "group": "\(kafka.groupID)",
            "max_in_flight": "\(config.worker.maxInFlight)",
        ])

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.commitLoop(consumer) }
                group.addTask { await self.controlLoop(control) }
                await withDiscardingTaskGroup { jobs in
                    let flow = FlowControl(consumer)
                    for await message in consumer.messages {
                        if limiter.isFull { flow.pause() }
                        await limiter.acquire()
                        // Resume here too: the jobs may all have finished between the
                        // pause and the acquire, and then no release would resume.
                        if !limiter.isFull { flow.resume() }
                        tracker.withLock { $0.begin(message.topicPartition, offset: message.offset) }
                        self.metrics.jobStarted()
                        jobs.addTask {
                            defer {
                                limiter.release()
                                // A freed slot resumes fetching; waiting for the next
                                // message to do it would wait forever on paused partitions.
                                if !limiter.isFull { flow.resume() }
                                self.metrics.jobEnded()
                            }
                            await self.handle(message, runner: runner, producer: producer, keyring: keyring)
                        }
                    }
                    // Intake stopped: let running jobs finish within the drain time.
                    let drainDeadline = MonotonicClock.now() + self.config.worker.drainSeconds
                    while limiter.inFlight > 0 {
                        if MonotonicClock.now() > drainDeadline {
                            logger.warning("drain time is up; cancelling \(limiter.inFlight) jobs, they will be redelivered")
                            jobs.cancelAll()
                            break
                        }
                        try? await Task.sleep(for: .milliseconds(50))
                    }
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            logger.info("shutting down: no new jobs, draining those in flight")
            consumer.stopDelivering()
        }

        commitDue(consumer, synchronously: true)
        control.close()
        consumer.close()
        producer.shutdown()
        http.shutdown()
        redis.shutdown()
        logger.info("worker stopped")
    }

    /// Commits what is committable, every 100 ms.
    private func commitLoop(_ consumer: KafkaConsumer) async {
        var ticks = 0
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(100))
            commitDue(consumer, synchronously: false)
            ticks += 1
            if ticks % 50 == 0 {
                for (tp, behind) in consumer.lag() { metrics.lag(partition: tp.partition, behind: behind) }
            }
        }
    }

    private func commitDue(_ consumer: KafkaConsumer, synchronously: Bool) {
        let due = tracker.withLock { t in
            let due = t.commitsDue()
            for (tp, offset) in due { t.markCommitted(tp, offset: offset) }
            return due
        }
        guard !due.isEmpty else { return }
        do {
            try consumer.commit(due.map { TopicPartitionOffset($0.0, offset: $0.1) }, synchronously: synchronously)
        } catch {
            logger.warning("commit failed: \(error)")
        }
    }

    /// Applies cancel requests from the control topic.
    private func controlLoop(_ control: KafkaConsumer) async {
        for await message in control.messages {
            guard let request = CancelRequest.parse(
                message.value, key: message.keyString, timestampMs: message.timestampMs, receivedAt: Date().timeIntervalSince1970)
            else {
                logger.warning("ignoring a control message that is not {\"type\": \"cancel\", \"job_id\": ...}",
                               metadata: ["offset": "\(message.offset)"])
                continue
            }
            // A cancel older than the event TTL is ignored by the registry.
            if cancels.cancel(request) {
                logger.info("cancelling job on request", metadata: ["job_id": "\(request.jobID)"])
            }
        }
    }

    private func handle(_ message: KafkaMessage, runner: JobRunner, producer: KafkaProducer, keyring: JobKeyring?) async {
        let job: Job
        do {
            guard message.value.count <= config.worker.maxJobBytes else {
                throw SluiceError(.invalidJob, "the job is \(message.value.count) bytes, more than worker.max_job_bytes (\(config.worker.maxJobBytes))")
            }
            var parsed = try Job.parse(message.value, key: message.keyString)
            if let sealed = parsed.sealedAPIKey {
                guard let keyring else {
                    throw SluiceError(.invalidJob, "the job's api_key is sealed and this worker has no job key: set kafka.job_key_env")
                }
                parsed.apiKey = try keyring.open(sealed, jobID: parsed.id)
            }
            job = parsed
        } catch {
            let reason = (error as? SluiceError)?.message ?? "\(error)"
            logger.warning("message sent to the DLQ: \(reason)", metadata: [
                "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
            ])
            metrics.sentToDLQ()
            let record = DLQRecord(message: message, error: reason)
            if await deliver(producer, topic: config.kafka.dlqTopic, key: message.key, value: (try? JSON.encode(record)) ?? []) {
                complete(message)
            }
            return
        }

        // The job runs in a task of its own so a cancel request can stop it alone; a
        // shutdown (this task cancelled) stops it too, and then no result is produced.
        let cancels = self.cancels
        let work = Task {
            await runner.run(job, producedAtMs: message.timestampMs, cancelledByUser: { cancels.isCancelled(job) })
        }
        let token = cancels.register(job) { work.cancel() }
        if cancels.isCancelled(job) { work.cancel() }
        let (response, value) = await withTaskCancellationHandler { await work.value } onCancel: { work.cancel() }
        cancels.unregister(job.id, token: token)
        if Task.isCancelled {
            // Cancelled by shutdown's drain deadline: leave it uncommitted, so it is
            // redelivered rather than reported as cancelled.
            return
        }
        metrics.finished(response)
        guard !value.isEmpty else { return }
        if await deliver(producer, topic: config.kafka.resultsTopic, key: Array(job.id.utf8), value: value) {
            complete(message)
        }
    }

    /// Produces until acknowledged, retrying while the broker is away; gives up only
    /// when the worker is cancelled (the message then stays uncommitted).
    private func deliver(_ producer: KafkaProducer, topic: String, key: [UInt8]?, value: [UInt8]) async -> Bool {
        var delay = 0.2
        while true {
            do {
                try await producer.send(topic: topic, key: key, value: value)
                return true
            } catch {
                if Task.isCancelled { return false }
                switch deliveryFailures.admit(topic) {
                case .first: logger.warning("producing to \(topic) failed, retrying until the broker takes it: \(error)")
                case .summary(let count): logger.warning("producing to \(topic) still fails (\(count) times in the last \(deliveryFailures.interval)), retrying: \(error)")
                case .suppressed: break
                }
                try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
                delay = min(delay * 2, 5)
            }
        }
    }

    private func complete(_ message: KafkaMessage) {
        tracker.withLock { _ = $0.complete(message.topicPartition, offset: message.offset) }
    }
}

/// A message that could not be parsed or validated, as written to the DLQ.
struct DLQRecord: Encodable {
    var error: String
    var topic: String
    var partition: Int32
    var offset: Int64
    var key: String?
    var valueBase64: String
    var at: String

    init(message: KafkaMessage, error: String) {
        self.error = error
        self.topic = message.topic
        self.partition = message.partition
        self.offset = message.offset
        self.key = message.keyString
        self.valueBase64 = Data(DLQRecord.redacted(message.value)).base64EncodedString()
        self.at = ISO8601DateFormatter().string(from: Date())
    }

    /// The message value with any `api_key` removed, where it is JSON enough to find it.
    static func redacted(_ value: [UInt8]) -> [UInt8] {
        guard var object = (try? JSON.decode(JSONValue.self, from: value))?.objectValue, object["api_key"] != nil else {
            return value
        }
        object["api_key"] = nil
        return (try? JSON.encode(JSONValue.object(object))) ?? []
    }

    enum CodingKeys: String, CodingKey {
        case error, topic, partition, offset, key, at
        case valueBase64 = "value_base64"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(error, forKey: .error)
        try c.encode(topic, forKey: .topic)
        try c.encode(partition, forKey: .partition)
        try c.encode(offset, forKey: .offset)
        try c.encode(key, forKey: .key)
        try c.encode(valueBase64, forKey: .valueBase64)
        try c.encode(at, forKey: .at)
    }
}

/// The offset tracker, shared by the job tasks, the committer and the rebalance callback.
final class SharedTracker: Sendable {
    private let mutex = Mutex(OffsetTracker())

    func withLock<R>(_ body: (inout OffsetTracker) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}

/// Pauses the consumer's partitions when the worker is full and resumes them when a slot
/// frees, whichever task sees it first.
final class FlowControl: Sendable {
    private let consumer: KafkaConsumer
    private let paused = Mutex(false)

    init(_ consumer: KafkaConsumer) { self.consumer = consumer }

    // The librdkafka calls happen under the lock, so a pause and a resume from two tasks
    // reach the consumer in the order their flag changes did.
    func pause() {
        paused.withLock { p in
            if !p { consumer.pause() }
            p = true
        }
    }

    func resume() {
        paused.withLock { p in
            if p { consumer.resume() }
            p = false
        }
    }
}
