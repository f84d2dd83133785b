import Foundation
import Logging
import SluiceCore
import SluiceKafka
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

/// Where the helper programs are.
public struct BenchTools: Sendable {
    public var sluice: String
    public var tansu: String
    public var redisServer: String
    public var redisBenchmark: String?
    public var python: String?

    public init(sluice: String, tansu: String, redisServer: String, redisBenchmark: String?, python: String?) {
        self.sluice = sluice
        self.tansu = tansu
        self.redisServer = redisServer
        self.redisBenchmark = redisBenchmark
        self.python = python
    }
}

/// The stack under test: Redis, the broker, topics, one worker and the gateway, on free
/// loopback ports, with the model `bench` served by the bench's provider.
struct BenchStack: Sendable {
    let config: SluiceConfig
    let configPath: String
    let redisPort: Int
    let gatewayPort: Int
    let worker: ChildProcess
    let gateway: ChildProcess
    let redis: ChildProcess

    var gatewayURL: String { "http://127.0.0.1:\(gatewayPort)" }

    static let model = "bench"

    static func start(
        children: ChildProcessGroup, tools: BenchTools, providerURL: String, maxInFlight: Int,
        kafkaProperties: [String: String] = [:], runDir: URL, logger: Logger
    ) async throws -> BenchStack {
        let redisPort = LoopbackPort.free()
        let kafkaPort = LoopbackPort.free()
        let gatewayPort = LoopbackPort.free()
        let redis = try await children.start("redis", tools.redisServer, [
            "--port", "\(redisPort)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "20000",
        ])
        try await children.start("broker", tools.tansu, [
            "broker", "--listener-url", "tcp://127.0.0.1:\(kafkaPort)",
            "--advertised-listener-url", "tcp://127.0.0.1:\(kafkaPort)", "--storage-engine", "memory://tansu/",
        ])
        try await children.waitForPort(redisPort, name: "redis")
        try await children.waitForPort(kafkaPort, name: "broker")

        var config = SluiceConfig()
        config.kafka.brokers = "127.0.0.1:\(kafkaPort)"
        config.kafka.groupID = "sluice-bench-workers"
        config.kafka.properties = kafkaProperties
        config.redis.url = "redis://127.0.0.1:\(redisPort)"
        config.redis.eventTTLSeconds = 600
        config.gateway.listen = "127.0.0.1:\(gatewayPort)"
        // The bench measures capacity, not tenant fairness: its one tenant may follow and
        // run as many streams as the scenarios open (the defaults answer 429 past 64
        // readers and 1,000 jobs in flight).
        config.gateway.maxReadersPerTenant = 1_000_000
        config.gateway.maxJobsPerTenant = 1_000_000
        config.worker.maxInFlight = maxInFlight
        config.worker.maxAttempts = 1
        config.providers = [.init(name: "bench", kind: .openaiCompatible, baseURL: providerURL)]
        config.models = [model: ModelTarget(provider: "bench", model: "bench-1")]
        // JSON is YAML: the config file needs no YAML encoder.
        let configPath = runDir.appendingPathComponent("sluice.yaml").path
        try Data(JSON.encode(config)).write(to: URL(fileURLWithPath: configPath))

        try KafkaAdmin.createTopics(brokers: config.kafka.brokers, topics: [
            (config.kafka.requestsTopic, 4), (config.kafka.resultsTopic, 4), (config.kafka.dlqTopic, 1), (config.kafka.controlTopic, 1),
        ], config: config.kafka.topicConfig)
        let worker = try await children.start("worker", tools.sluice, [
            "worker", "--config", configPath, "--log-level", "warning", "--max-in-flight", "\(maxInFlight)",
        ])
        let gateway = try await children.start("gateway", tools.sluice, ["gateway", "--config", configPath, "--log-level", "warning"])
        try await children.waitForPort(gatewayPort, name: "gateway")
        return BenchStack(
            config: config, configPath: configPath, redisPort: redisPort, gatewayPort: gatewayPort,
            worker: worker, gateway: gateway, redis: redis)
    }
}
