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

/// One run of a batch file: reads the input, submits jobs, collects results, writes the
/// output, shows progress, and returns the summary.
///
/// Three loops: the submitter (reads lines, waits for a free slot, produces a job), the
/// collector (reads the results topic, appends each of this run's results to the output,
/// frees a slot), and the coordinator (progress, signals, the end). The counts they
/// share sit in `ledger`.
final class BatchRunner: Sendable {
    struct Options: Sendable {
        var input: String
        var output: String
        var maxInFlight: Int
        var provider: String?
        var stallTimeout: Double
        /// The end of the completion window (seconds since the epoch): every job's deadline.
        var deadline: Double? = nil
    }

    let options: Options
    let config: SluiceConfig
    let logger: Logger
    let display: ProgressDisplay
    /// This run's id. Job ids are `<batchID>-<custom_id>`; a new id per run, so the
    /// results of an earlier run (still arriving, or redelivered) are never taken for
    /// this one's.
    let batchID: String
    let ledger: Mutex<BatchLedger>
    /// At most `max_in_flight` jobs in flight: the reader of the input acquires, the
    /// reader of results releases.
    let slots: AsyncSemaphore
    let signals: SignalWatcher
    let startedAt = MonotonicClock.now()

    init(options: Options, config: SluiceConfig, logger: Logger, display: ProgressDisplay, signals: SignalWatcher) {
        self.signals = signals
        self.options = options
        self.config = config
        self.logger = logger
        self.display = display
        self.batchID = "batch-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(12)
        let size = (try? FileManager.default.attributesOfItem(atPath: options.input)[.size] as? NSNumber)?.int64Value ?? 0
        self.ledger = Mutex(BatchLedger(inputBytes: size, now: MonotonicClock.now()))
        self.slots = AsyncSemaphore(permits: options.maxInFlight)
    }

    func jobID(for customID: String) -> String {
        // A custom_id that would make no valid job id (too long, or characters other
        // than letters, digits, '.', '_', ':' and '-') is replaced by its digest.
        let id = "\(batchID)-\(customID)"
        return Job.isValidID(id) ? id : "\(batchID)-h\(String(Job.stableHash(customID), radix: 16))"
    }

    func run() async -> BatchSummary {
        do {
            return try await runChecked()
        } catch {
            ledger.withLock { $0.abort(because: "\(error)") }
            return summary(.aborted)
        }
    }

    private func runChecked() async throws -> BatchSummary {
        let kafka = config.kafka
        let (output, existing) = try BatchOutput.open(options.output)
        defer { output.close() }
        if existing.repairedTail {
            display.note("\(options.output): its last line was cut short by an interrupted write; removed it (that request runs again)")
        }
        if !existing.unreadable.isEmpty {
            display.note("\(options.output): lines \(Self.list(existing.unreadable)) are not result lines; left as they are, their requests run again")
        }
        if !existing.done.isEmpty {
            display.note("resuming: \(existing.done.count) custom_ids already in \(options.output) are skipped")
        }

        // The results consumer: a group of its own, starting at the end of the topic (only
        // this run's results matter), and committing what it has read so that a rejoin
        // after a broker hiccup carries on where it was rather than at the new end.
        let positions = ReadPositions()
        let assigned = Mutex<Set<TopicPartition>>([])
        var consumerProperties = kafka.consumerProperties
        consumerProperties["auto.offset.reset"] = "latest"
        let resultsTopic = kafka.resultsTopic
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(
                brokers: kafka.brokers, groupID: "sluice-\(batchID)", topics: [kafka.resultsTopic, kafka.dlqTopic],
                properties: consumerProperties, logger: logger,
                onRebalance: { event in
                switch event {
                case .assigned(let tps, _):
                    assigned.withLock { $0.formUnion(tps.filter { $0.topic == resultsTopic }) }
                    return []
                case .revoked(let tps):
                    assigned.withLock { $0.subtract(tps) }
                    return positions.due(for: Set(tps))
                }
            })
        } catch {
            throw BatchError("cannot create a Kafka consumer for \(kafka.brokers): \(error)")
        }
        defer { consumer.close() }
        // A send that cannot be delivered fails after a minute (librdkafka's default is
        // five) rather than hanging the batch; kafka.properties may say otherwise.
        var producerProperties = ["message.timeout.ms": "60000"]
        producerProperties.merge(kafka.producerProperties, uniquingKeysWith: { $1 })
        let producer: KafkaProducer
        do {
            producer = try KafkaProducer(brokers: kafka.brokers, properties: producerProperties, logger: logger)
        } catch {
            throw BatchError("cannot create a Kafka producer for \(kafka.brokers): \(error)")
        }
        defer { producer.shutdown(timeoutMs: 2_000) }

        display.update("\(batchID): connecting to \(kafka.brokers)", now: MonotonicClock.now(), force: true)
        // Wait until the results topic is assigned, plus a moment for the consumer to look
        // up the end offsets it starts from: a job is produced only after that, so its
        // result cannot come before the position the consumer reads from.
        let deadline = MonotonicClock.now() + 30
        while assigned.withLock({ $0.isEmpty }) {
            if signals.count > 0 { return summary(.interrupted) }
            guard MonotonicClock.now() < deadline else {
                throw BatchError("""
                    no partition of \(kafka.resultsTopic) was assigned to the batch's consumer within 30 s. \
                    Is the broker at \(kafka.brokers) up (kafka.brokers, SLUICE_KAFKA_BROKERS), and do the topics \
                    exist? Create them with `sluice topics --config FILE`.
                    """)
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        try? await Task.sleep(for: .seconds(1))
        ledger.withLock { $0.lastActivity = MonotonicClock.now() }

        let outcome: BatchSummary.Outcome = await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.submit(producer: producer, done: existing.done) }
            group.addTask { await self.collect(consumer: consumer, output: output, positions: positions) }
            let outcome = await coordinate(consumer: consumer, positions: positions)
            consumer.stopDelivering()
            group.cancelAll()
            await group.waitForAll()
            return outcome
        }
        let final = positions.due(for: nil)
        if !final.isEmpty { try? consumer.commit(final, synchronously: true) }
        return summary(outcome)
    }

    // MARK: The three loops

    /// Reads the input, checks each line, and produces a job per new request while a
    /// slot is free.
    private func submit(producer: KafkaProducer, done: Set<Int>) async {
        let reader: LineReader
        do {
            reader = try LineReader(path: options.input)
        } catch {
            ledger.withLock { $0.abort(because: "\(error)") }
            return
        }
        // Per-job keys cross Kafka sealed, as the gateway and `sluice submit` send them.
        let keyring: JobKeyring?
        do {
            keyring = try JobKeyring.from(config.kafka, environment: ProcessInfo.processInfo.environment)
        } catch {
            ledger.withLock { $0.abort(because: "\(error)") }
            return
        }
        var seen: [Int: Int] = [:]  // custom_id hash -> line of its first appearance
        var lineNumber = 0
        while !Task.isCancelled {
            if ledger.withLock({ $0.stopping || $0.abortReason != nil }) { return }
            let raw: [UInt8]
            do {
                guard let line = try reader.next() else {
                    ledger.withLock { $0.inputDone = true }
                    return
                }
                raw = line
            } catch {
                ledger.withLock { $0.abort(because: "\(error)") }
                return
            }
            lineNumber += 1
            ledger.withLock { $0.bytesRead += Int64(raw.count) }
            let text = raw.withoutNewline
            if text.isBlank { continue }

            let request: BatchFormat.Request
            do {
                request = try BatchFormat.parseRequest(text)
            } catch {
                invalid(line: lineNumber, reason: Self.reason(error))
                continue
            }
            let key = customIDHash(request.customID)
            if let first = seen[key] {
                duplicate(line: lineNumber, customID: request.customID, first: first)
                continue
            }
            seen[key] = lineNumber
            if done.contains(key) {
                ledger.withLock { $0.skipped += 1 }
                continue
            }
            let jobID = jobID(for: request.customID)
            let value: [UInt8]
            sealing: do {
                let (parsed, job) = try BatchFormat.job(
                    request, id: jobID, defaultProvider: options.provider, limits: JobLimits(config), deadline: options.deadline)
                guard let apiKey = parsed.apiKey, case .object(var body) = job else {
                    value = try JSON.encode(job)
                    break sealing
                }
                guard let keyring else {
                    throw SluiceError(.config, "a per-job api_key travels sealed, and no job key is configured: set kafka.job_key_env (the same key on gateways and workers)")
                }
                body["api_key"] = nil
                body["api_key_sealed"] = .string(try keyring.seal(apiKey, jobID: jobID))
                value = try JSON.encode(JSONValue.object(body))
            } catch {
                invalid(line: lineNumber, reason: Self.reason(error))
                continue
            }
            guard value.count <= config.worker.maxJobBytes else {
                invalid(line: lineNumber, reason: "the job is \(value.count) bytes, more than worker.max_job_bytes (\(config.worker.maxJobBytes))")
                continue
            }

            guard await slots.acquire() else { return }
            let go: Bool = ledger.withLock { l in
                guard !l.stopping, l.abortReason == nil else { return false }
                l.register(jobID, InFlightJob(customID: request.customID, line: lineNumber), now: MonotonicClock.now())
                return true
            }
            guard go else {
                slots.release()
                return
            }
            // Not a child task: a send cannot be cancelled (librdkafka settles it by
            // message.timeout.ms at the latest), and a run that stops must not wait for it.
            let topic = config.kafka.batchRequestsTopic
            let brokers = config.kafka.brokers
            Task {
                do {
                    try await producer.send(topic: topic, key: jobID, value: value)
                } catch {
                    self.ledger.withLock {
                        $0.abort(because: """
                            producing to \(topic) at \(brokers) failed: \(error). Check that the broker is up and the \
                            topic exists (`sluice topics`); results received so far are in the output, so run the same \
                            command again to resume
                            """)
                    }
                }
            }
        }
    }

    /// Reads the results (and the DLQ) and writes a line for each of this run's jobs, once.
    private func collect(consumer: KafkaConsumer, output: BatchOutput, positions: ReadPositions) async {
        let prefix = batchID + "-"
        let resultsTopic = config.kafka.resultsTopic
        for await message in consumer.messages {
            positions.read(message)
            guard let key = message.keyString, key.hasPrefix(prefix) else { continue }
            // A job id already answered, or never ours: a redelivered result counts once.
            guard let job = ledger.withLock({ $0.inFlight.removeValue(forKey: key) }) else { continue }
            let line: [UInt8]
            let requestID = "batch_req_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
            if message.topic == resultsTopic {
                if let response = try? JSON.decode(UnifiedResponse.self, from: message.value) {
                    line = BatchFormat.render(
                        requestID: requestID, customID: job.customID, jobID: key,
                        statusCode: BatchFormat.statusCode(response), body: message.value, error: BatchFormat.error(response))
                    ledger.withLock { $0.record(response, now: MonotonicClock.now()) }
                } else {
                    let isJSON = (try? JSON.decode(JSONValue.self, from: message.value)) != nil
                    line = BatchFormat.render(
                        requestID: requestID, customID: job.customID, jobID: key, statusCode: 502,
                        body: isJSON ? message.value : nil,
                        error: ("invalid_result", "the result on \(resultsTopic) is not a unified response"))
                    ledger.withLock { $0.recordFailure(now: MonotonicClock.now()) }
                }
            } else {
                // The worker could not parse or validate the job (its checks may be stricter
                // than this command's, e.g. a smaller worker.max_job_bytes).
                let reason = (try? JSON.decode(JSONValue.self, from: message.value))?["error"]?.stringValue
                line = BatchFormat.render(
                    requestID: requestID, customID: job.customID, jobID: key, statusCode: 400, body: nil,
                    error: ("invalid_job", "the worker rejected the job: \(reason ?? "no reason given")"))
                ledger.withLock { $0.recordFailure(now: MonotonicClock.now()) }
            }
            do {
                try output.append(line)
            } catch {
                ledger.withLock { $0.abort(because: "\(error)") }
                return
            }
            slots.release()
        }
    }

    /// Watches the run: progress, signals, stalls, commits; returns how it ended.
    private func coordinate(consumer: KafkaConsumer, positions: ReadPositions) async -> BatchSummary.Outcome {
        var rates = RateWindow()
        var lastCommit = MonotonicClock.now()
        var lastStallWarning = 0.0
        var signalsSeen = 0
        while true {
            try? await Task.sleep(for: .milliseconds(100))
            let now = MonotonicClock.now()
            let snapshot = ledger.withLock { $0 }
            rates.add(now: now, finished: snapshot.succeeded + snapshot.failed)

            let signals = self.signals.count
            if signals != signalsSeen {
                signalsSeen = signals
                if signals >= 2 { return .interrupted }
                ledger.withLock { $0.stopping = true }
                if snapshot.inFlight.count > 0 {
                    display.note("""
                        stopping: no new requests; waiting for the \(snapshot.inFlight.count) in flight. \
                        Ctrl-C again to quit now (they run again when you resume)
                        """)
                }
            }
            if snapshot.abortReason != nil { return .aborted }
            if snapshot.inFlight.isEmpty {
                if snapshot.inputDone { return .completed }
                if snapshot.stopping { return .interrupted }
            }

            if snapshot.inFlight.isEmpty {
                lastStallWarning = 0
            } else {
                let quiet = now - snapshot.lastActivity
                if options.stallTimeout > 0, quiet >= options.stallTimeout {
                    ledger.withLock {
                        $0.abort(because: """
                            no result for \(Int(quiet)) s with \(snapshot.inFlight.count) jobs in flight (--stall-timeout). \
                            Are workers running and consuming \(config.kafka.batchRequestsTopic) at \(config.kafka.brokers)?
                            """)
                    }
                    return .aborted
                }
                if quiet >= 60, quiet - lastStallWarning >= 60 {
                    lastStallWarning = quiet
                    display.note("""
                        no result for \(Int(quiet)) s with \(snapshot.inFlight.count) jobs in flight: are workers \
                        (`sluice worker`) running and consuming \(config.kafka.batchRequestsTopic) at \(config.kafka.brokers)?
                        """)
                }
            }

            if now - lastCommit >= 2 {
                lastCommit = now
                let due = positions.due(for: nil)
                if !due.isEmpty { try? consumer.commit(due) }
            }
            display.update(progressLine(snapshot, rate: rates.rate, now: now), now: now)
        }
    }

    // MARK: Reporting

    private func invalid(line: Int, reason: String) {
        let shown = ledger.withLock { $0.noteInvalid(line: line, reason: reason) }
        if shown { display.note("line \(line): invalid, skipped: \(reason)") }
        else if ledger.withLock({ $0.invalid }) == BatchLedger.shownPerKind + 1 {
            display.note("more invalid lines: counted in the summary, not shown")
        }
    }

    private func duplicate(line: Int, customID: String, first: Int) {
        let shown = ledger.withLock { $0.noteDuplicate(line: line, customID: customID, first: first) }
        if shown { display.note("line \(line): duplicate custom_id \(Self.quoted(customID)) (first on line \(first)), skipped") }
        else if ledger.withLock({ $0.duplicates }) == BatchLedger.shownPerKind + 1 {
            display.note("more duplicate custom_ids: counted in the summary, not shown")
        }
    }

    private func progressLine(_ l: BatchLedger, rate: Double?, now: Double) -> String {
        var parts: [String] = []
        let read = l.inputBytes > 0 ? " \(min(100, Int(Double(l.bytesRead) * 100 / Double(l.inputBytes))))% read" : ""
        parts.append("\(batchID)\(read)")
        parts.append("\(l.succeeded) ok, \(l.failed) failed, \(l.inFlight.count) in flight")
        if l.heldByRateLimit, let wait = l.recentRateLimitWait {
            parts.append("held by provider rate limit (jobs wait ~\(Human.duration(wait)))")
        }
        if l.skipped > 0 { parts.append("\(l.skipped) skipped") }
        if l.invalid + l.duplicates > 0 { parts.append("bad lines \(l.invalid + l.duplicates)") }
        parts.append(rate.map(Human.rate) ?? "--/s")
        parts.append("ETA " + (eta(l, rate: rate).map(Human.duration) ?? "--"))
        parts.append("\(Human.count(l.totalTokens)) tokens")
        parts.append(Human.cost(l.costUSD) + (l.unpriced > 0 ? "+" : ""))
        parts.append(Human.duration(now - startedAt))
        return parts.joined(separator: " | ")
    }

    /// Jobs still to come over the current rate. Before the end of the input, what is
    /// left of it is estimated from the bytes per line and the share of lines that
    /// became jobs so far.
    private func eta(_ l: BatchLedger, rate: Double?) -> Double? {
        guard let rate, rate > 0 else { return nil }
        var remaining = Double(l.inFlight.count)
        if !l.inputDone {
            let lines = l.submitted + l.skipped + l.invalid + l.duplicates
            guard lines > 0, l.bytesRead > 0 else { return nil }
            let bytesPerLine = Double(l.bytesRead) / Double(lines)
            let unread = Double(max(0, l.inputBytes - l.bytesRead)) / bytesPerLine
            remaining += unread * Double(l.submitted) / Double(lines)
        }
        return remaining / rate
    }

    private func summary(_ outcome: BatchSummary.Outcome) -> BatchSummary {
        let l = ledger.withLock { $0 }
        return BatchSummary(
            outcome: outcome, batchID: batchID, input: options.input, output: options.output,
            succeeded: l.succeeded, failed: l.failed, skipped: l.skipped, invalid: l.invalid, duplicates: l.duplicates,
            submitted: l.submitted, unfinished: l.inFlight.count, inputComplete: l.inputDone,
            inputTokens: l.inputTokens, outputTokens: l.outputTokens, totalTokens: l.totalTokens,
            costUSD: l.costUSD, unpriced: l.unpriced, wallTimeS: MonotonicClock.now() - startedAt,
            invalidLines: l.invalidShown, duplicateLines: l.duplicatesShown, error: l.abortReason)
    }

    static func reason(_ error: any Error) -> String {
        (error as? SluiceError)?.message ?? "\(error)"
    }

    static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        JSON.appendString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// "4, 9, 11 and 3 more": the first `limit` of `lines`, out of `total`.
    static func list(_ lines: [Int], total: Int? = nil, limit: Int = 10) -> String {
        let total = total ?? lines.count
        let shown = lines.prefix(limit)
        let text = shown.map(String.init).joined(separator: ", ")
        return total > shown.count ? "\(text) and \(total - shown.count) more" : text
    }

}

struct InFlightJob: Sendable {
    var customID: String
    var line: Int
}

/// What the three loops share.
struct BatchLedger: Sendable {
    static let shownPerKind = 100

    var inputBytes: Int64
    var bytesRead: Int64 = 0
    var inputDone = false
    var stopping = false
    var abortReason: String?

    var inFlight: [String: InFlightJob] = [:]
    var submitted = 0
    var succeeded = 0
    var failed = 0
    var skipped = 0
    var invalid = 0
    var duplicates = 0
    var invalidShown: [BatchSummary.InvalidLine] = []
    var duplicatesShown: [BatchSummary.DuplicateLine] = []

    var inputTokens = 0
    var outputTokens = 0
    var totalTokens = 0
    var costUSD = 0.0
    var unpriced = 0
    /// How long the latest results were held by a provider's rate limit (a moving
    /// average of their `rate_limit_wait_s`), nil before the first.
    var recentRateLimitWait: Double?
    /// The last result, or when jobs began to be in flight again: the stall clock.
    var lastActivity: Double

    init(inputBytes: Int64, now: Double) {
        self.inputBytes = inputBytes
        self.lastActivity = now
    }

    mutating func register(_ jobID: String, _ job: InFlightJob, now: Double) {
        if inFlight.isEmpty { lastActivity = now }
        inFlight[jobID] = job
        submitted += 1
    }

    mutating func record(_ r: UnifiedResponse, now: Double) {
        if r.status == .succeeded { succeeded += 1 } else { failed += 1 }
        inputTokens += r.metrics.inputTokens
        outputTokens += r.metrics.outputTokens
        totalTokens += r.metrics.totalTokens
        if let c = r.metrics.costUSD { costUSD += c } else if r.metrics.totalTokens > 0 { unpriced += 1 }
        let wait = r.metrics.rateLimitWaitS
        recentRateLimitWait = recentRateLimitWait.map { $0 * 0.8 + wait * 0.2 } ?? wait
        lastActivity = now
    }

    /// Whether the jobs are being paced by a provider's rate limit.
    var heldByRateLimit: Bool { (recentRateLimitWait ?? 0) >= 0.5 }

    mutating func recordFailure(now: Double) {
        failed += 1
        lastActivity = now
    }

    /// The first reason wins; later failures are usually its consequences.
    mutating func abort(because reason: String) {
        if abortReason == nil { abortReason = reason }
    }

    /// Returns whether the line should be shown (the first hundred are).
    mutating func noteInvalid(line: Int, reason: String) -> Bool {
        invalid += 1
        guard invalidShown.count < Self.shownPerKind else { return false }
        invalidShown.append(.init(line: line, reason: reason))
        return true
    }

    mutating func noteDuplicate(line: Int, customID: String, first: Int) -> Bool {
        duplicates += 1
        guard duplicatesShown.count < Self.shownPerKind else { return false }
        duplicatesShown.append(.init(line: line, customID: customID, firstLine: first))
        return true
    }
}

/// Results per second over the last ten seconds.
struct RateWindow {
    private var samples: [(time: Double, finished: Int)] = []

    mutating func add(now: Double, finished: Int) {
        if let last = samples.last, now - last.time < 0.5 { return }
        samples.append((now, finished))
        while let first = samples.first, now - first.time > 10 { samples.removeFirst() }
    }

    var rate: Double? {
        guard let first = samples.first, let last = samples.last, last.time - first.time >= 1 else { return nil }
        return Double(last.finished - first.finished) / (last.time - first.time)
    }
}

/// The next offset to read per partition of the results consumer: what it commits.
final class ReadPositions: Sendable {
    private let next = Mutex<[TopicPartition: Int64]>([:])

    func read(_ message: KafkaMessage) {
        next.withLock { $0[message.topicPartition] = message.offset + 1 }
    }

    /// The positions of `partitions` (all when nil).
    func due(for partitions: Set<TopicPartition>?) -> [TopicPartitionOffset] {
        next.withLock { n in
            n.compactMap { tp, offset in
                partitions == nil || partitions!.contains(tp) ? TopicPartitionOffset(tp, offset: offset) : nil
            }
        }
    }
}

/// The end of a run, for people (text) and programs (`--json`).
struct BatchSummary: Encodable {
    enum Outcome: String, Encodable {
        case completed, interrupted, aborted
    }

    struct InvalidLine: Encodable, Sendable {
        var line: Int
        var reason: String
    }

    struct DuplicateLine: Encodable, Sendable {
        var line: Int
        var customID: String
        var firstLine: Int

        enum CodingKeys: String, CodingKey {
            case line
            case customID = "custom_id"
            case firstLine = "first_line"
        }
    }

    var outcome: Outcome
    var batchID: String
    var input: String
    var output: String
    var succeeded: Int
    var failed: Int
    var skipped: Int
    var invalid: Int
    var duplicates: Int
    var submitted: Int
    /// Submitted but without a result when the run ended.
    var unfinished: Int
    var inputComplete: Bool
    var inputTokens: Int
    var outputTokens: Int
    var totalTokens: Int
    var costUSD: Double
    /// Results with tokens but no price (their cost is not in `cost_usd`).
    var unpriced: Int
    var wallTimeS: Double
    /// The first hundred of each, in input order.
    var invalidLines: [InvalidLine]
    var duplicateLines: [DuplicateLine]
    var error: String?

    enum CodingKeys: String, CodingKey {
        case outcome, input, output, succeeded, failed, skipped, invalid, duplicates, submitted, unfinished, unpriced, error
        case batchID = "batch_id"
        case inputComplete = "input_complete"
        case inputTokens = "input_tokens"
        case outputTokens = "output_tokens"
        case totalTokens = "total_tokens"
        case costUSD = "cost_usd"
        case wallTimeS = "wall_time_s"
        case invalidLines = "invalid_lines"
        case duplicateLines = "duplicate_lines"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(batchID, forKey: .batchID)
        try c.encode(input, forKey: .input)
        try c.encode(output, forKey: .output)
        try c.encode(succeeded, forKey: .succeeded)
        try c.encode(failed, forKey: .failed)
        try c.encode(skipped, forKey: .skipped)
        try c.encode(invalid, forKey: .invalid)
        try c.encode(duplicates, forKey: .duplicates)
        try c.encode(submitted, forKey: .submitted)
        try c.encode(unfinished, forKey: .unfinished)
        try c.encode(inputComplete, forKey: .inputComplete)
        try c.encode(inputTokens, forKey: .inputTokens)
        try c.encode(outputTokens, forKey: .outputTokens)
        try c.encode(totalTokens, forKey: .totalTokens)
        try c.encode(costUSD, forKey: .costUSD)
        try c.encode(unpriced, forKey: .unpriced)
        try c.encode(wallTimeS, forKey: .wallTimeS)
        try c.encode(invalidLines, forKey: .invalidLines)
        try c.encode(duplicateLines, forKey: .duplicateLines)
        try c.encode(error, forKey: .error)
    }

    var text: String {
        var out: String
        switch outcome {
        case .completed:
            out = "batch \(batchID): done in \(Human.duration(wallTimeS))\n"
        case .interrupted:
            out = "batch \(batchID): interrupted after \(Human.duration(wallTimeS)); run the same command again to resume\n"
        case .aborted:
            out = "batch \(batchID): stopped after \(Human.duration(wallTimeS)): \(error ?? "unknown error")\n"
        }
        func row(_ name: String, _ value: String) { out += "  " + name.padding(toLength: 13, withPad: " ", startingAt: 0) + value + "\n" }
        row("output", output)
        row("succeeded", "\(succeeded)")
        row("failed", "\(failed)" + (failed > 0 ? "  (status_code >= 400 and \"error\" in their lines)" : ""))
        row("skipped", "\(skipped)" + (skipped > 0 ? "  (already in the output)" : ""))
        row("invalid", "\(invalid)" + (invalid > 0 ? (invalid == 1 ? "  line " : "  lines ") + BatchRunner.list(invalidLines.map(\.line), total: invalid, limit: 20) : ""))
        var dups = "\(duplicates)"
        if duplicates > 0 {
            dups += "  " + duplicateLines.prefix(10).map { "line \($0.line) (\(BatchRunner.quoted($0.customID)), first on line \($0.firstLine))" }
                .joined(separator: ", ")
            if duplicates > 10 { dups += " and \(duplicates - 10) more" }
        }
        row("duplicates", dups)
        if unfinished > 0 { row("unfinished", "\(unfinished)  (submitted, no result yet: they run again on resume)") }
        row("tokens", "\(inputTokens) in, \(outputTokens) out, \(totalTokens) total")
        row("cost", Human.cost(costUSD) + (unpriced > 0 ? "  (+ \(unpriced) results with no price for their model)" : ""))
        let finished = succeeded + failed
        row("wall time", Human.duration(wallTimeS) + (finished > 0 && wallTimeS > 0 ? "  (\(Human.rate(Double(finished) / wallTimeS)))" : ""))
        return out
    }
}
