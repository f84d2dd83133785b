import ArgumentParser
import Foundation
import Logging
import SluiceCore

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Run LLM completions asynchronously: jobs on Kafka, streams on Redis, results on Kafka.",
        discussion: """
            Start with `sluice dev --demo`: it starts a local broker, Redis, the mock provider, a worker and \
            the gateway, streams one job to the terminal and prints its metrics. Configuration is a YAML \
            file (--config or SLUICE_CONFIG); every key has a default. SLUICE_KAFKA_BROKERS, \
            SLUICE_REDIS_URL, SLUICE_HTTP_ADDR and SLUICE_GROUP_ID override the file.
            """,
        subcommands: [
            WorkerCommand.self, GatewayCommand.self, DevCommand.self, SubmitCommand.self,
            MockProviderCommand.self, TopicsCommand.self,
        ]
    )
}

/// Options every command that reads the configuration shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "The YAML configuration file (default: $SLUICE_CONFIG, else built-in defaults).")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func loadConfig() throws -> SluiceConfig {
        let env = ProcessInfo.processInfo.environment
        let path = config ?? env["SLUICE_CONFIG"]
        var text = ""
        if let path, !path.isEmpty {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read the config file \(path); check the path given by --config or SLUICE_CONFIG")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        do {
            return try SluiceConfig.parse(yaml: text, environment: env)
        } catch let error as SluiceError {
            throw ValidationError("\(path ?? "config"): \(error.message)")
        }
    }

    func makeLogger(_ label: String) -> Logger {
        let level = Logger.Level(rawValue: logLevel.lowercased()) ?? .info
        LogSetup.bootstrapOnce(level: level)
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

enum LogSetup {
    nonisolated(unsafe) private static var bootstrapped = false
    private static let lock = NSLock()

    /// Logs go to stderr, so stdout stays for a command's output.
    static func bootstrapOnce(level: Logger.Level) {
        lock.lock()
        defer { lock.unlock() }
        guard !bootstrapped else { return }
        bootstrapped = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
