import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceGateway
import SluiceKafka
import SluiceMockProvider
import SluiceTelemetry
import SluiceWorker
import SluiceSupport

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Consume jobs from the requests topic, run them, publish their events and results.",
        discussion: """
            Runs up to worker.max_in_flight jobs at once. SIGTERM or Ctrl-C stops taking jobs, lets those \
            in flight finish within worker.drain_s, commits and exits; unfinished jobs are redelivered.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "Override worker.max_in_flight.")
    var maxInFlight: Int?

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (and /healthz); off when not given.")
    var metricsListen: String?

    func run() async throws {
        MallocTuning.applyForServer()
        var config = try global.loadConfig()
        if let maxInFlight { config.worker.maxInFlight = maxInFlight }
        let logger = global.makeLogger("sluice.worker")
        // First in the group, so stopped last: spans of the jobs drained at shutdown go out.
        let tracing = try TracingBackend.make(config.tracing, serviceName: "sluice-worker", logger: logger)
        let worker = Worker(config: config, logger: logger, tracer: tracing.tracer)
        var services: [any Service] = (tracing.service.map { [$0] } ?? []) + [worker]
        if let metricsListen {
            guard let address = HostPort(metricsListen) else {
                throw ValidationError("--metrics-listen must be host:port, e.g. 0.0.0.0:9464")
            }
            let router = Router()
            let metrics = worker.metrics
            router.get("/metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                         body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
            }
            router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
            services.append(Application(
                router: router, configuration: .init(address: .hostname(address.host.isEmpty ? "0.0.0.0" : address.host, port: address.port)),
                logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Serve the HTTP API: submit jobs, follow their events as Server-Sent Events.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Override gateway.listen (host:port).")
    var listen: String?

    func run() async throws {
        MallocTuning.applyForServer()
        var config = try global.loadConfig()
        if let listen { config.gateway.listen = listen }
        let logger = global.makeLogger("sluice.gateway")
        let tracing = try TracingBackend.make(config.tracing, serviceName: "sluice-gateway", logger: logger)
        let gateway = try Gateway(config: config, logger: logger, tracer: tracing.tracer)
        let app = try gateway.buildApplication { port in
            logger.info("gateway listening", metadata: ["port": "\(port)"])
        }
        let group = ServiceGroup(configuration: .init(
            services: (tracing.service.map { [$0] } ?? []) + [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct MockProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-provider",
        abstract: "A deterministic LLM provider (OpenAI, Azure, Anthropic and Gemini wire formats) with paced streaming and fault injection.",
        discussion: """
            OpenAI: POST /v1/chat/completions; Azure: /openai/deployments/{d}/chat/completions; Anthropic: \
            POST /v1/messages; Gemini: /v1beta/models/{model}:streamGenerateContent. Per request, headers \
            such as x-mock-chunks, x-mock-chunk-delay-ms, x-mock-first-token-delay-ms and x-mock-status (or \
            the same knobs in the model name, e.g. mock-chunks=20,delay=50) script the reply; see the README.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "Address to listen on (host:port).")
    var listen: String = "127.0.0.1:8081"

    @Option(help: "Content chunks per reply when a request does not say.")
    var chunks: Int = 8

    @Option(help: "Pause between content chunks, in milliseconds, when a request does not say.")
    var chunkDelayMs: Int = 0

    @Option(help: "Pause before the first content chunk, in milliseconds, when a request does not say.")
    var firstTokenDelayMs: Int = 0

    @Option(help: "Enforce this many requests per minute per API key, answering 429 with rate-limit headers over it.")
    var rpm: Int?

    @Option(help: ArgumentHelp(
        "Serve HTTPS (HTTP/2 for clients that offer it) with a self-signed certificate for 127.0.0.1 made at start, written to this file for clients to trust (a provider's ca_file).",
        valueName: "file"))
    var tlsCertOut: String?

    func run() async throws {
        let logger = global.makeLogger("sluice.mock-provider")
        guard let address = HostPort(listen) else {
            throw ValidationError("--listen must be host:port, e.g. 127.0.0.1:8081")
        }
        let defaults = MockBehavior(
            chunks: chunks, chunkDelay: .milliseconds(chunkDelayMs), firstTokenDelay: .milliseconds(firstTokenDelayMs))
        if let rpm, rpm < 1 { throw ValidationError("--rpm must be at least 1") }
        var tls: MockCertificate?
        if let tlsCertOut {
            let certificate = try MockCertificate.selfSigned()
            try certificate.writeCertificate(to: tlsCertOut)
            tls = certificate
        }
        let scheme = tls == nil ? "http" : "https"
        let server = MockProviderServer(
            host: address.host, port: address.port, defaults: defaults, rateLimit: rpm.map { MockRateLimit(rpm: $0) }, tls: tls,
            logger: logger
        ) { port in
            logger.info("mock provider listening", metadata: ["port": "\(port)", "scheme": "\(scheme)"])
        }
        let group = ServiceGroup(
            configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Create Sluice's topics (requests, batch requests, results, DLQ, control) if they do not exist.",
        discussion: """
            Each is created with max.message.bytes set to kafka.max_message_bytes, so a record as large \
            as the gateway accepts fits. Existing topics are left as they are.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "Partitions for the requests, batch requests and results topics (the DLQ and the control topic get one).")
    var partitions: Int = 8

    func run() async throws {
        let config = try global.loadConfig()
        try KafkaAdmin.createTopics(
            brokers: config.kafka.brokers, topics: SluiceTopics.all(config, partitions: partitions), config: config.kafka.topicConfig)
        print("topics ready on \(config.kafka.brokers)")
    }
}

enum SluiceTopics {
    static func all(_ config: SluiceConfig, partitions: Int) -> [(name: String, partitions: Int)] {
        [
            (config.kafka.requestsTopic, partitions), (config.kafka.batchRequestsTopic, partitions),
            (config.kafka.resultsTopic, partitions), (config.kafka.dlqTopic, 1), (config.kafka.controlTopic, 1),
        ]
    }
}
