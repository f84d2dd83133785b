// swift-tools-version:6.1
// Sluice: asynchronous LLM completions over Kafka, streamed through Redis.
import PackageDescription

// librdkafka >= 2.10 is built by `make setup` into .deps/librdkafka (Debian bookworm's
// 2.0.2 cannot talk to the Tansu broker; 2.4 to 2.9 crash on a recreated topic). pkg-config finds it through PKG_CONFIG_PATH,
// which the Makefile sets; the rpath lets the built binary load it with no environment.
// A system-wide install (the Docker image) is found by pkg-config as usual.
let rdkafkaLibDir = Context.packageDirectory + "/.deps/librdkafka/lib"

// Linux only: the HTTP client waits on epoll and an eventfd, and a child process is
// watched with `waitid`. No `platforms:` entry, since SwiftPM
// cannot say "Linux only" and an Apple platform listed would claim a build that fails.
let package = Package(
    name: "sluice",
    products: [
        .executable(name: "sluice", targets: ["SluiceCLI"]),
        // For the micro-benchmarks in Benchmarks/, a package of their own.
        .library(name: "SluiceWorker", targets: ["SluiceWorker"]),
        .library(name: "SluiceGateway", targets: ["SluiceGateway"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // Counts the allocations of the chunk path (`SluiceAllocations`, `AllocationTests`).
        .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
        // Tracing: swift-distributed-tracing's API and swift-otel's OTLP/HTTP exporter; the
        // OTLPHTTP trait alone (traits need tools 6.1) leaves its gRPC stack out of the build.
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.1.0"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context", from: "1.0.0"),
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        // The mock provider's self-signed certificate for HTTPS (`MockCertificate`).
        .package(url: "https://github.com/apple/swift-certificates", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.0.0"),
    ],
    targets: [
        // C libraries, each behind a one-line shim header; nothing above the Swift layer
        // that wraps a module sees its C types.
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),

        // The infrastructure every module shares, once: dedicated threads, the condition
        // lock, the monotonic clock, backoff, `host:port`, an async semaphore, loopback
        // ports, child processes and signal watching.
        .target(name: "SluiceSupport", dependencies: [
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "Subprocess", package: "swift-subprocess"),
        ]),

        // Thin Swift layers over the C libraries.
        .target(
            name: "SluiceKafka",
            dependencies: [
                "CRdKafka", "SluiceSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-rpath", "-Xlinker", rdkafkaLibDir])]
        ),
        .target(name: "SluiceRedis", dependencies: [
            "CHiredis", "SluiceSupport", .product(name: "Logging", package: "swift-log"),
            // SHA1 names the Lua scripts run by EVALSHA.
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "SluiceHTTPClient", dependencies: ["CCurl", "SluiceSupport", .product(name: "Logging", package: "swift-log")]),

        // The domain model: jobs, chunks, events, the unified response, metrics, config.
        // No I/O, no C.
        .target(name: "SluiceCore", dependencies: [
            .product(name: "Yams", package: "Yams"),
            .product(name: "Mustache", package: "swift-mustache"),
            // Sealing per-job provider keys for the Kafka record (AES-GCM).
            .product(name: "Crypto", package: "swift-crypto"),
            // Reading and writing the W3C trace context a job's records carry.
            .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
        ]),

        // The tracing backend: an OTLP exporter built from `tracing.*` (off by default).
        .target(name: "SluiceTelemetry", dependencies: [
            "SluiceCore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Tracing", package: "swift-distributed-tracing"),
            .product(name: "OTel", package: "swift-otel"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // Provider wire formats over the HTTP client.
        .target(name: "SluiceProviders", dependencies: [
            "SluiceCore", "SluiceHTTPClient", "SluiceSupport", .product(name: "Logging", package: "swift-log"),
        ]),

        // The three servers.
        .target(name: "SluiceWorker", dependencies: [
            "SluiceCore", "SluiceProviders", "SluiceKafka", "SluiceRedis", "SluiceTelemetry", "SluiceSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(
            name: "SluiceGateway",
            dependencies: [
                "SluiceCore", "SluiceKafka", "SluiceRedis", "SluiceTelemetry", "SluiceSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The API description, compiled into the binary as bytes
            // (`PackageResources.openapi_json`): no bundle to ship beside `sluice`.
            resources: [.embedInCode("Resources/openapi.json")]
        ),
        .target(name: "SluiceMockProvider", dependencies: [
            "SluiceSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            // HTTPS with HTTP/2 (ALPN) and the certificate it serves. swift-nio-ssl and
            // swift-nio-http2 are in the build already (swift-otel's OTLP/HTTP exporter).
            .product(name: "HummingbirdHTTP2", package: "hummingbird"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // `sluice bench`: the pipeline measured against Redis's PUBLISH ceiling and a peer.
        .target(name: "SluiceBench", dependencies: [
            "SluiceCore", "SluiceKafka", "SluiceHTTPClient", "SluiceSupport",
            // The https scenario's certificate (`MockCertificate`) and HTTP/2 server.
            "SluiceMockProvider",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdHTTP2", package: "hummingbird"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // The command line: `sluice worker|gateway|dev|submit|mock-provider`.
        .executableTarget(name: "SluiceCLI", dependencies: [
            "SluiceCore", "SluiceKafka", "SluiceRedis", "SluiceHTTPClient", "SluiceProviders",
            "SluiceWorker", "SluiceGateway", "SluiceMockProvider", "SluiceBench", "SluiceTelemetry", "SluiceSupport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // Prints the chunk path's allocations per chunk; run by `AllocationTests` with the
        // interposer preloaded. Not part of the `sluice` binary.
        .executableTarget(name: "SluiceAllocations", dependencies: [
            "SluiceCore", "SluiceWorker", "SluiceGateway",
            .product(name: "MallocInterposerSwift", package: "malloc-interposer"),
            .product(name: "Hummingbird", package: "hummingbird"),
        ]),

        .testTarget(name: "SluiceCoreTests", dependencies: [
            "SluiceCore", "SluiceKafka", "SluiceProviders", "SluiceBench", "SluiceSupport",
            .product(name: "PropertyBased", package: "swift-property-based"),
        ]),
        // The worker's job runner and result delivery against a scripted provider, a
        // recording Redis and a producer that holds its acknowledgements: no servers.
        .testTarget(name: "SluiceWorkerTests", dependencies: [
            "SluiceCore", "SluiceWorker", "SluiceProviders", "SluiceHTTPClient", "SluiceRedis", "SluiceKafka", "SluiceSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The gateway's routes in process, over in-memory fakes of its job queue and job
        // store: no broker, no Redis.
        .testTarget(name: "SluiceGatewayTests", dependencies: [
            "SluiceCore", "SluiceGateway", "SluiceKafka",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "SluiceIntegrationTests", dependencies: [
            "SluiceCore", "SluiceKafka", "SluiceRedis", "SluiceHTTPClient", "SluiceProviders",
            "SluiceWorker", "SluiceGateway", "SluiceMockProvider", "SluiceTelemetry", "SluiceSupport",
            .product(name: "Logging", package: "swift-log"),
            // The OTLP receiver of the tracing test.
            .product(name: "Hummingbird", package: "hummingbird"),
        ]),
    ]
)
