import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceKafka
import Yams
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run the whole stack locally: broker, Redis, mock provider, a worker and the gateway.",
        discussion: """
            Starts each part as a child process on loopback, creates the topics, prints the URLs and keeps \
            running until Ctrl-C (or until a child dies), then stops everything it started. Logs go to \
            --run-dir/logs. With --demo it also streams one job to the terminal, prints its metrics and stops.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "Port of the Kafka-compatible broker (Tansu).")
    var kafkaPort: Int = 9092
    @Option(help: "Port of redis-server.")
    var redisPort: Int = 6379
    @Option(help: "Port of the gateway.")
    var gatewayPort: Int = 8080
    @Option(help: "Port of the mock provider.")
    var mockPort: Int = 8081
    @Option(help: "Where the generated config and the logs go.")
    var runDir: String = ".run/dev"
    @Flag(help: "Stream one demo job to the terminal, print its metrics, then stop.")
    var demo = false
    @Option(help: "The demo's prompt.")
    var prompt: String = "Hello! Who are you?"

    func run() async throws {
        let logger = global.makeLogger("sluice.dev")
        let tansu = try Tools.find("tansu", env: "SLUICE_TANSU")
        let redisServer = try Tools.find("redis-server", env: "SLUICE_REDIS_SERVER")
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        for (name, port) in [("broker", kafkaPort), ("Redis", redisPort), ("gateway", gatewayPort), ("mock provider", mockPort)]
        where LoopbackPort.isListening(port) {
            throw ValidationError("port \(port) for the \(name) is taken; stop what uses it or pass another port (see `sluice dev --help`)")
        }

        // The stack's config: defaults plus the local ports, and `default` served by the mock.
        var config = try global.loadConfig()
        config.kafka.brokers = "127.0.0.1:\(kafkaPort)"
        config.redis.url = "redis://127.0.0.1:\(redisPort)"
        config.gateway.listen = "127.0.0.1:\(gatewayPort)"
        // The mock speaks every wire format: one provider per format, so each can be tried
        // locally (`--provider mock-anthropic --model claude-mock`).
        config.providers.removeAll { $0.name.hasPrefix("mock") }
        config.providers.append(.init(name: "mock", kind: .mock, baseURL: "http://127.0.0.1:\(mockPort)/v1"))
        config.providers.append(.init(name: "mock-anthropic", kind: .anthropic, baseURL: "http://127.0.0.1:\(mockPort)", apiKeyEnv: "SLUICE_DEV_MOCK_KEY"))
        config.providers.append(.init(name: "mock-gemini", kind: .gemini, baseURL: "http://127.0.0.1:\(mockPort)", apiKeyEnv: "SLUICE_DEV_MOCK_KEY"))
        config.models["default"] = ModelTarget(provider: "mock", model: "mock-1")
        // A job key of this run's, for per-job api_keys (the children inherit it).
        if config.kafka.jobKeyEnv == nil, config.kafka.jobKey == nil {
            var bytes = [UInt8](repeating: 0, count: 32)
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
            setenv("SLUICE_DEV_JOB_KEY", Data(bytes).base64EncodedString(), 1)
            config.kafka.jobKeyEnv = "SLUICE_DEV_JOB_KEY"
        }
        let dir = URL(fileURLWithPath: runDir, isDirectory: true)
        let logs = dir.appendingPathComponent("logs", isDirectory: true)
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let configPath = dir.appendingPathComponent("sluice.yaml").path
        try YAMLEncoder().encode(config).write(toFile: configPath, atomically: true, encoding: .utf8)

        // The mock checks only that a key is there; the worker child inherits this one.
        setenv("SLUICE_DEV_MOCK_KEY", "dev-mock-key", 0)
        let onKill: @Sendable (ChildProcess) -> Void = { child in
            logger.warning("\(child.name) did not stop within 10 s of SIGTERM and was killed")
        }
        try await ChildProcessGroup.with(logDir: logs, onKill: onKill) { children in
            let signals = await SignalWatcher()

            /// Waits until each port accepts connections; fails if a child dies, time runs
            /// out or a signal comes.
            func waitForPorts(_ ports: [(String, Int)]) async throws {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for (name, port) in ports { try await children.waitForPort(port, name: name) }
                    }
                    group.addTask {
                        _ = await signals.next()
                        if !Task.isCancelled { throw ExitCode(130) }
                    }
                    defer { group.cancelAll() }
                    try await group.next()
                }
            }

            func step(_ text: String) { FileHandle.standardError.write(Data("• \(text)\n".utf8)) }

            step("starting Redis on 127.0.0.1:\(redisPort)")
            try await children.start("redis", redisServer, ["--port", "\(redisPort)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            step("starting the broker (Tansu) on 127.0.0.1:\(kafkaPort)")
            try await children.start("broker", tansu, [
                "broker", "--listener-url", "tcp://127.0.0.1:\(kafkaPort)",
                "--advertised-listener-url", "tcp://127.0.0.1:\(kafkaPort)", "--storage-engine", "memory://tansu/",
            ])
            step("starting the mock provider on 127.0.0.1:\(mockPort)")
            try await children.start("mock-provider", me, [
                "mock-provider", "--listen", "127.0.0.1:\(mockPort)", "--chunk-delay-ms", "40", "--chunks", "24",
            ])
            try await waitForPorts([("redis", redisPort), ("broker", kafkaPort), ("mock-provider", mockPort)])

            step("creating topics")
            try KafkaAdmin.createTopics(
                brokers: config.kafka.brokers, topics: SluiceTopics.all(config, partitions: 4), config: config.kafka.topicConfig)

            step("starting a worker and the gateway")
            try await children.start("worker", me, ["worker", "--config", configPath, "--log-level", global.logLevel])
            try await children.start("gateway", me, ["gateway", "--config", configPath, "--log-level", global.logLevel])
            try await waitForPorts([("gateway", gatewayPort)])

            say("""

                Sluice is running.
                  gateway        http://127.0.0.1:\(gatewayPort)   (POST /v1/jobs, GET /v1/jobs/{id}/events)
                  broker         127.0.0.1:\(kafkaPort)            (topics \(config.kafka.requestsTopic), \(config.kafka.resultsTopic), \(config.kafka.dlqTopic))
                  redis          redis://127.0.0.1:\(redisPort)
                  mock provider  http://127.0.0.1:\(mockPort)/v1
                  config         \(configPath)
                  logs           \(logs.path)

                """)

            if demo {
                say("Demo job: \"\(prompt)\"\n")
                let job = Job(id: "demo-" + UUID().uuidString.lowercased(), model: "default",
                              request: .messages([["role": "user", "content": .string(prompt)]]), stream: true)
                // The worker's first group join takes a few seconds; the job waits in the topic.
                let terminal = JobTerminal(config: config, logger: logger)
                let status = try await withThrowingTaskGroup(of: UnifiedResponse.Status?.self) { group in
                    group.addTask { try await terminal.run(job) }
                    group.addTask {
                        // Stop waiting if the stack breaks or the user interrupts.
                        let reason = await Self.waitForExitOrSignal(children, signals)
                        if Task.isCancelled { return nil }
                        FileHandle.standardError.write(Data("\nstopping: \(reason)\n".utf8))
                        return nil
                    }
                    let first = try await group.next() ?? nil
                    group.cancelAll()
                    return first ?? .failed
                }
                say(status == .succeeded ? "Demo done. Run `sluice dev` to keep the stack up." : "The demo job did not succeed; see \(logs.path).")
                if status != .succeeded { throw ExitCode(1) }
                return
            }

            say("Press Ctrl-C to stop.")
            let reason = await Self.waitForExitOrSignal(children, signals)
            say("\nstopping (\(reason))")
        }
    }

    /// Why the stack should stop: a signal, or a child that exited.
    static func waitForExitOrSignal(_ children: ChildProcessGroup, _ signals: SignalWatcher) async -> String {
        await withTaskGroup(of: String?.self) { group in
            group.addTask {
                guard let signal = await signals.next() else { return nil }
                return signal == .sigint ? "interrupted" : "terminated"
            }
            group.addTask { await children.waitForExit() }
            defer { group.cancelAll() }
            return await group.next().flatMap { $0 } ?? "cancelled"
        }
    }
}

/// Finds a helper program: an environment override, then PATH, then the project's
/// `.deps/bin` (where `make setup` puts it) above the executable or the working directory.
enum Tools {
    static func find(_ name: String, env: String) throws -> String {
        let fm = FileManager.default
        if let p = ProcessInfo.processInfo.environment[env], fm.isExecutableFile(atPath: p) { return p }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if fm.isExecutableFile(atPath: p) { return p }
        }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        for start in [exe.deletingLastPathComponent(), URL(fileURLWithPath: fm.currentDirectoryPath)] {
            var dir = start
            for _ in 0..<8 {
                let p = dir.appendingPathComponent(".deps/bin/\(name)").path
                if fm.isExecutableFile(atPath: p) { return p }
                dir = dir.deletingLastPathComponent()
            }
        }
        throw ValidationError("cannot find \(name); run `make setup`, or set \(env) to its path")
    }
}

/// Writes a line to stdout at once (print() buffers when stdout is not a terminal, and
/// the lines would come after the streamed job's).
func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
