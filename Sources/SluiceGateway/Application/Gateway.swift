import Foundation
import Logging
import SluiceCore
import SluiceKafka
import SluiceRedis
import SluiceTelemetry
import SluiceSupport

/// `sluice gateway`: the HTTP front. It only submits jobs to Kafka, subscribes to their
/// events on Redis and converts them into the shapes clients already speak; the work
/// happens in the workers.
///
/// The parts, by folder: `Application` (this type, the router and the server),
/// `Routes` (one file per API family), `Streams` (following a job's events and relaying
/// them as Server-Sent Events), `Auth`, `Error`, `Middleware`, `Metrics`, `OpenAPI`.
public struct Gateway: Sendable {
    let config: SluiceConfig
    let logger: Logger
    /// Where jobs and cancels are produced (Kafka).
    let queue: any JobQueue
    /// What the routes read and write of a job's keys (Redis).
    let store: any JobStore
    /// The one Redis pub/sub connection of the process, shared by every reader.
    let subscriber: RedisSubscriber
    let follower: JobEventFollower
    let keys: APIKeyTable
    let metrics: GatewayMetrics
    /// Seals per-job provider keys for the requests topic; nil without `kafka.job_key_env`.
    let keyring: JobKeyring?
    /// Event streams open per tenant (`gateway.max_readers_per_tenant`).
    let readers: ReaderLimiter
    /// A span per submission, when tracing is on.
    let tracer: SluiceTracer

    /// The gateway on Kafka and Redis, as `config` names them.
    public init(config: SluiceConfig, logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment,
                tracer: SluiceTracer = .off) throws {
        let redis = RedisConnection(configuration: try RedisConfiguration(url: config.redis.url), logger: logger)
        let queue = try KafkaJobQueue(
            brokers: config.kafka.brokers, producerProperties: config.kafka.producerProperties, properties: config.kafka.properties,
            logger: logger)
        try self.init(config: config, logger: logger, queue: queue, store: RedisJobStore(redis: redis), redis: redis,
                      environment: environment, tracer: tracer)
    }

    /// The gateway over any job queue and job store. Its event streams still follow jobs
    /// on Redis (`config.redis.url`, connected by the first stream): a gateway over
    /// in-memory fakes serves every route but those that stream a job's events.
    public init(config: SluiceConfig, logger: Logger, queue: any JobQueue, store: any JobStore,
                environment: [String: String] = ProcessInfo.processInfo.environment, tracer: SluiceTracer = .off) throws {
        let redis = RedisConnection(configuration: try RedisConfiguration(url: config.redis.url), logger: logger)
        try self.init(config: config, logger: logger, queue: queue, store: store, redis: redis, environment: environment, tracer: tracer)
    }

    private init(config: SluiceConfig, logger: Logger, queue: any JobQueue, store: any JobStore, redis: RedisConnection,
                 environment: [String: String], tracer: SluiceTracer) throws {
        self.config = config
        self.logger = logger
        self.tracer = tracer
        self.queue = queue
        self.store = store
        self.subscriber = RedisSubscriber(configuration: try RedisConfiguration(url: config.redis.url), logger: logger)
        self.follower = JobEventFollower(
            redis: redis, subscriber: subscriber, heartbeat: .seconds(15), bufferEvents: config.gateway.readerBufferEvents,
            marksFollowed: config.worker.batchChunkEvents == .followed)
        self.keys = APIKeyTable(
            config.gateway.apiKeys, admin: (config.gateway.adminKeyEnv, config.gateway.adminKey), environment: environment)
        self.metrics = GatewayMetrics()
        self.keyring = try JobKeyring.from(config.kafka, environment: environment)
        self.readers = ReaderLimiter(limit: config.gateway.maxReadersPerTenant)
    }

    /// Stops the clients the gateway owns (after the server has stopped: its application
    /// does, by `GatewayClients`). Later calls return at once.
    public func shutdown() {
        queue.shutdown()
        subscriber.shutdown()
        follower.redis.shutdown()
        store.shutdown()
    }

    static func parseListen(_ listen: String) throws -> (String, Int) {
        guard let address = HostPort(listen) else {
            throw SluiceError(.config, "gateway.listen must be host:port with a port from 0 to 65535, got \"\(listen)\"")
        }
        return (address.host.isEmpty ? "0.0.0.0" : address.host, address.port)
    }
}
