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
