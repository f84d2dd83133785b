import ArgumentParser
import Foundation
import Logging
import SluiceCore
import Synchronization

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
            MockProviderCommand.self, TopicsCommand.self, BatchCommand.self, BenchCommand.self,
        ]
    )
}

/// Options every command that reads the configuration shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "The YAML configuration file (default: $SLUICE_CONFIG, else built-in defaults).")
    var config: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: "Log format: text, or json (one object per line, for log collectors).")
    var logFormat: LogFormat = .text

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
        LogSetup.bootstrapOnce(level: level, format: logFormat)
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

enum LogSetup {
    private static let bootstrapped = Mutex(false)

    /// Logs go to stderr, so stdout stays for a command's output.
    static func bootstrapOnce(level: Logger.Level, format: LogFormat) {
        bootstrapped.withLock { done in
            guard !done else { return }
            done = true
            LoggingSystem.bootstrap { label in
                switch format {
                case .text:
                    var handler = StreamLogHandler.standardError(label: label)
                    handler.logLevel = level
                    return handler
                case .json:
                    var handler = JSONLogHandler(label: label)
                    handler.logLevel = level
                    return handler
                }
            }
        }
    }
}

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// One JSON object per line on stderr: `ts`, `level`, `logger`, `msg`, and the metadata
/// as fields (`job_id`, `provider`, `attempt`, ...).
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    private static let lock = Mutex(())

    init(label: String) { self.label = label }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        var fields: [String: JSONValue] = [
            "ts": .string(Date().formatted(.iso8601.time(includingFractionalSeconds: true).year().month().day().dateSeparator(.dash).timeZone(separator: .omitted))),
            "level": .string(level.rawValue),
            "logger": .string(label),
            "msg": .string(message.description),
        ]
        for (k, v) in self.metadata.merging(explicit ?? [:], uniquingKeysWith: { $1 }) where fields[k] == nil {
            fields[k] = JSONLogHandler.json(v)
        }
        guard var bytes = try? JSON.sortedEncoder.encode(JSONValue.object(fields)) else { return }
        bytes.append(0x0A)
        JSONLogHandler.lock.withLock { _ in FileHandle.standardError.write(bytes) }
    }

    static func json(_ v: Logger.MetadataValue) -> JSONValue {
        switch v {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let a): .array(a.map(json))
        case .dictionary(let d): .object(d.mapValues(json))
        }
    }
}
