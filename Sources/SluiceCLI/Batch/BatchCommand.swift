import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceKafka
import Synchronization
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

struct BatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Run a JSONL file of requests (OpenAI Batch format) and write the results as JSONL.",
        discussion: """
            Each input line is {"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {chat \
            request}}. Each becomes a job on the requests topic (id batch-RUN-CUSTOM_ID, stream false unless the \
            body says otherwise); its result, read from the results topic, is appended to --output as \
            {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}, the body being the \
            unified response with its metrics. The input is read line by line, with at most --max-in-flight \
            jobs submitted and not yet answered.

            Resume: run the same command again. The output is appended to, and custom_ids already in it are \
            skipped. Delete a result's line to run that request again.

            Invalid lines (not JSON, fields missing, another url or method, a body that is not a valid job) \
            and duplicate custom_ids are reported with their line numbers and skipped.

            Exit status: 0 when every request got a result, failed ones included (their lines have an HTTP \
            status_code >= 400 and "error" set), with --fail-on-error 1 instead if a request failed or a line \
            was invalid or a duplicate; 2 when the run could not go on (broker, files); 130 when interrupted. \
            Ctrl-C once stops submitting and waits for the jobs in flight; twice quits at once (those run again \
            on resume).
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The input file, one request per line.")
    var input: String

    @Option(name: .shortAndLong, help: "The output file. Appended to; custom_ids already in it are skipped.")
    var output: String

    @Option(help: "Jobs submitted and not yet answered, at most.")
    var maxInFlight: Int = 256

    @Option(help: "The provider for requests whose body names none (a name from `providers`), e.g. openai.")
    var provider: String?

    @Option(help: "Seconds between progress lines when stderr is not a terminal.")
    var progressInterval: Double = 5

    @Option(help: "How long the batch may take: each job must start within it or it ends expired (e.g. 24h, 90m, 3600).")
    var completionWindow: String = "24h"

    @Option(help: "Give up (exit 2) when jobs are in flight and no result has come for this many seconds; 0 waits forever.")
    var stallTimeout: Double = 0

    @Flag(help: "Exit 1 when a request failed, or a line was invalid or a duplicate.")
    var failOnError = false

    @Flag(help: "Print the summary as one line of JSON on stdout.")
    var json = false

    @Flag(help: "No progress display (problems and the summary are still printed).")
    var quiet = false

    func validate() throws {
        guard maxInFlight >= 1 else { throw ValidationError("--max-in-flight must be at least 1") }
        guard progressInterval > 0 else { throw ValidationError("--progress-interval must be more than 0") }
        guard let window = BatchCommand.seconds(completionWindow), window > 0 else {
            throw ValidationError("--completion-window must be a duration such as 24h, 90m, 45s or a number of seconds")
        }
        guard stallTimeout >= 0 else { throw ValidationError("--stall-timeout must be 0 (wait for ever) or more") }
        let a = URL(fileURLWithPath: input).standardizedFileURL.path
        let b = URL(fileURLWithPath: output).standardizedFileURL.path
        guard a != b else { throw ValidationError("--output must not be the input file") }
    }

    func run() async throws {
        let config = try global.loadConfig()
        guard FileManager.default.isReadableFile(atPath: input) else {
            throw ValidationError("cannot read the input \(input); check the path")
        }
        if let provider, config.provider(named: provider) == nil {
            throw ValidationError("--provider \(provider) is not configured; configured: \(config.providers.map(\.name).joined(separator: ", "))")
        }
        let display = ProgressDisplay(enabled: !quiet, interval: progressInterval)
        // Logs go through the display. The Kafka client's info lines (partition
        // assignments) would only clutter a batch's stderr: below warning, only when
        // asked for with --log-level debug or trace.
        let requested = Logger.Level(rawValue: global.logLevel.lowercased()) ?? .info
        let level = requested <= .debug ? requested : max(requested, .warning)
        let format = global.logFormat
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                return BatchLogHandler(label: label, display: display, logLevel: level)
            case .json:
                // For log collectors: one JSON object per line, as the other commands write.
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        var logger = Logger(label: "sluice.batch")
        logger.logLevel = level
        // SIGINT and SIGTERM counted, not acted on: the first drains, the second quits.
        let signals = await SignalWatcher()

        let options = BatchRunner.Options(
            input: input, output: output, maxInFlight: maxInFlight, provider: provider, stallTimeout: stallTimeout,
            deadline: Date().timeIntervalSince1970 + (BatchCommand.seconds(completionWindow) ?? 86_400))
        let runner = BatchRunner(options: options, config: config, logger: logger, display: display, signals: signals)
        let summary = await runner.run()
        display.clear()
        if json, summary.outcome == .aborted, let error = summary.error {
            display.note("error: \(error)")
        }
        if json {
            let bytes = (try? JSON.sortedEncoder.encode(summary)) ?? Data("{}".utf8)
            FileHandle.standardOutput.write(bytes + Data("\n".utf8))
        } else {
            FileHandle.standardOutput.write(Data(summary.text.utf8))
        }
        switch summary.outcome {
        case .completed:
            if failOnError, summary.failed + summary.invalid + summary.duplicates > 0 { throw ExitCode(1) }
        case .interrupted:
            throw ExitCode(130)
        case .aborted:
            throw ExitCode(2)
        }
    }
}

extension BatchCommand {
    /// `24h`, `90m`, `45s` or plain seconds.
    static func seconds(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let n = Double(t) { return n.isFinite ? n : nil }
        guard let unit = t.last, let n = Double(t.dropLast()), n.isFinite else { return nil }
        switch unit {
        case "h": return n * 3600
        case "m": return n * 60
        case "s": return n
        case "d": return n * 86_400
        default: return nil
        }
    }
}
