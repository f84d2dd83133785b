import Foundation
import Logging
import SluiceCore
import SluiceKafka
import SluiceRedis
import SluiceTelemetry
import Synchronization
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
    let producer: KafkaProducer
    let redis: RedisConnection
    /// The one Redis pub/sub connection of the process, shared by every reader.
    let subscriber: RedisSubscriber
    let follower: JobEventFollower
    let keys: APIKeyTable
    let metrics: GatewayMetrics
    let kafkaProbe: LazyKafkaProbe
    /// Seals per-job provider keys for the requests topic; nil without `kafka.job_key_env`.
    let keyring: JobKeyring?
    /// Event streams open per tenant (`gateway.max_readers_per_tenant`).
    let readers: ReaderLimiter
    /// A span per submission, when tracing is on.
    let tracer: SluiceTracer

    public init(config: SluiceConfig, logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment,
                tracer: SluiceTracer = .off) throws {
        self.config = config
        self.logger = logger
        self.tracer = tracer
        let redisConfig = try RedisConfiguration(url: config.redis.url)
        self.redis = RedisConnection(configuration: redisConfig, logger: logger)
        self.subscriber = RedisSubscriber(configuration: redisConfig, logger: logger)
        self.producer = try KafkaProducer(brokers: config.kafka.brokers, properties: config.kafka.producerProperties, logger: logger)
        self.follower = JobEventFollower(
            redis: redis, subscriber: subscriber, heartbeat: .seconds(15), bufferEvents: config.gateway.readerBufferEvents,
            marksFollowed: config.worker.batchChunkEvents == .followed)
        self.keys = APIKeyTable(
            config.gateway.apiKeys, admin: (config.gateway.adminKeyEnv, config.gateway.adminKey), environment: environment)
        self.metrics = GatewayMetrics()
        self.keyring = try JobKeyring.from(config.kafka, environment: environment)
        self.kafkaProbe = LazyKafkaProbe(brokers: config.kafka.brokers, properties: config.kafka.properties, logger: logger)
        self.readers = ReaderLimiter(limit: config.gateway.maxReadersPerTenant)
    }

    /// Stops the clients the gateway owns (after the server has stopped).
    public func shutdown() {
        producer.shutdown(timeoutMs: 5_000)
        subscriber.shutdown()
        redis.shutdown()
        kafkaProbe.shutdown()
    }

    static func parseListen(_ listen: String) throws -> (String, Int) {
        guard let address = HostPort(listen) else {
            throw SluiceError(.config, "gateway.listen must be host:port with a port from 0 to 65535, got \"\(listen)\"")
        }
        return (address.host.isEmpty ? "0.0.0.0" : address.host, address.port)
    }
}

/// The Kafka readiness probe, created by the first `/readyz` (an idle gateway keeps no
/// extra connection).
final class LazyKafkaProbe: Sendable {
    private let brokers: String
    private let properties: [String: String]
    private let logger: Logger
    private let probe = Mutex<KafkaProbe?>(nil)

    init(brokers: String, properties: [String: String], logger: Logger) {
        self.brokers = brokers
        self.properties = properties
        self.logger = logger
    }

    func ping(timeoutMs: Int32) async throws {
        let probe = try self.probe.withLock { probe in
            if let probe { return probe }
            let made = try KafkaProbe(brokers: brokers, properties: properties, logger: logger)
            probe = made
            return made
        }
        try await probe.ping(timeoutMs: timeoutMs)
    }

    func shutdown() {
        probe.withLock { $0 = nil }
    }
}
