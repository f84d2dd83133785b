import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceHTTPClient
import SluiceKafka
import SluiceProviders
import SluiceRedis
import SluiceTelemetry
import Synchronization
import SluiceSupport

/// `sluice worker`: consumes jobs, runs them, publishes their events and results.
///
/// Two lanes: the interactive requests topic and the batch one, each read by a
/// consumer of its own. Interactive work may fill every slot; batch work gets what is
/// left of all but a reserve, and a freed slot goes to interactive work first.
///
/// The consumer's poll thread never waits for a job. Each job runs as a child task; when
/// `max_in_flight` are running, the partitions are paused until one finishes. A job's
/// offset becomes committable only once its result is acknowledged by the broker, and a
/// partition commits only up to its lowest job not yet done (`OffsetTracker`).
///
/// On graceful shutdown the worker stops taking messages, gives running jobs
/// `worker.drain_s` to finish, cancels the rest (uncommitted, so they are read again by
/// whichever worker gets the partition), commits, and leaves the group.
public final class Worker: Service {
    private let config: SluiceConfig
    private let logger: Logger
    private let environment: [String: String]
    let tracker = SharedTracker()
    private let cancels: CancelRegistry
    /// Every job in flight retries its result while the broker is away: one line per
    /// topic per 30 s, not one per retry.
    private let deliveryFailures = LogThrottle()
    /// Spans per job and per provider attempt, when tracing is on.
    private let tracer: SluiceTracer

    public let metrics: WorkerMetrics

    /// How often the offsets of finished jobs are committed while the worker runs; the
    /// shutdown commits what is left, whatever it is.
    let commitInterval: Duration

    public init(config: SluiceConfig, logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment,
                metrics: WorkerMetrics = WorkerMetrics(), tracer: SluiceTracer = .off, commitInterval: Duration = .milliseconds(100)) {
        self.config = config
        self.commitInterval = commitInterval
        self.logger = logger
        self.tracer = tracer
        self.environment = environment
        self.metrics = metrics
        self.cancels = CancelRegistry(ttlSeconds: Double(config.redis.eventTTLSeconds))
        metrics.labelTenants(config.namedTenants)
    }

    public func run() async throws {
        let kafka = config.kafka
        let redisConfig = try RedisConfiguration(url: config.redis.url)
        let redis = RedisConnection(configuration: redisConfig, logger: logger)
        // Room for a connection per job in flight (each provider request holds one over
        // HTTP/1.1), so none is closed and reopened between jobs.
        let http = CurlClient(logger: logger, maxConnections: max(1024, config.worker.maxInFlight))
        let producer = try KafkaProducer(brokers: kafka.brokers, properties: kafka.producerProperties, logger: logger)
        let tracker = self.tracker
        let logger = self.logger
        let metrics = self.metrics
        // One consumer per lane, so an interactive job never waits behind batch messages
        // already fetched. The batch lane is a group of its own (`group_id` + ".batch").
        func laneConsumer(topic: String, groupID: String) throws -> KafkaConsumer {
            try KafkaConsumer(
                brokers: kafka.brokers, groupID: groupID, topics: [topic],
                properties: kafka.consumerProperties, logger: logger,
                onRebalance: { event in
                    let due: [(TopicPartition, Int64)]
                    switch event {
                    case .assigned(let tps, let generation):
                        due = tracker.withLock { $0.assign(tps, generation: generation) }
                    case .revoked(let tps):
                        // Commit what is done before the partitions go; jobs still running on
                        // them finish, but their offsets are no longer ours to commit.
                        due = tracker.withLock { $0.revoke(tps) }
                    }
                    let held = tracker.withLock { $0.assigned.lazy.filter { $0.topic == topic }.count }
                    metrics.assigned(partitions: held, lane: topic == kafka.batchRequestsTopic ? .batch : .interactive)
                    return due.map { TopicPartitionOffset($0.0, offset: $0.1) }
                },
                onCommit: { outcome in
                    tracker.withLock { t in
                        for (tpo, ok) in outcome {
                            if ok {
                                t.commitSucceeded(tpo.topicPartition, offset: tpo.offset)
                            } else {
                                t.commitFailed(tpo.topicPartition, offset: tpo.offset)
                            }
                        }
                    }
                })
        }
        let consumer = try laneConsumer(topic: kafka.requestsTopic, groupID: kafka.groupID)
        let batchConsumer = try laneConsumer(topic: kafka.batchRequestsTopic, groupID: kafka.groupID + ".batch")
        let lanes = Lanes(interactive: consumer, batch: batchConsumer, batchTopic: kafka.batchRequestsTopic)
        // Every worker reads every cancel: all partitions of the control topic, without a
        // consumer group, from the oldest cancel that can still matter (the event TTL).
        let control = try KafkaConsumer(
            brokers: kafka.brokers, reading: kafka.controlTopic,
            fromTimestampMs: Int64(saturating: (Date().timeIntervalSince1970 - Double(config.redis.eventTTLSeconds)) * 1000),
            properties: kafka.properties, logger: logger)
        let keyring = try JobKeyring.from(config.kafka, environment: environment)
        // Streams' chunk events are queued on the curl thread as their bytes arrive; one
        // wake of Redis's thread carries all that one round of the curl thread queued, and
        // at most one wake a millisecond carries a trickle of paced chunks (a chunk after
        // a quiet millisecond goes at once).
        http.afterEachRound { redis.wakeIfIdle(atMostEvery: Worker.chunkWakeInterval) }
        let runner = JobRunner(
            config: config, providers: ProviderRunner(client: http), redis: redis,
            prices: PriceTable(overrides: config.pricing), logger: logger, environment: environment, metrics: metrics,
            limiter: RateLimiter(redis: redis, logger: logger, metrics: metrics), chunkEventsWakePerRound: true)
        let limiter = InFlightLimiter(limit: config.worker.maxInFlight)
        let renewer = ClaimRenewer(redis: redis)
        let drainDeadline = DrainDeadline()
        // Connect to Redis before the first job (it connects lazily); if it is down, the
        // worker still runs jobs and events follow when it is back.
        if (try? await redis.execute(RedisCommand("PING"))) == nil {
            logger.warning("Redis at \(redisConfig) is not reachable; jobs run, events resume when it is back")
        }

        logger.info("worker started", metadata: [
            "brokers": "\(kafka.brokers)", "topic": "\(kafka.requestsTopic)", "batch_topic": "\(kafka.batchRequestsTopic)",
            "group": "\(kafka.groupID)",
            "max_in_flight": "\(config.worker.maxInFlight)",
        ])

        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.commitLoop(lanes, redis: redis) }
                group.addTask { await self.controlLoop(control) }
                group.addTask { await renewer.run() }
                await withDiscardingTaskGroup { intakes in
                    intakes.addTask {
                        await self.intake(consumer, lane: .interactive, limiter: limiter, runner: runner, producer: producer,
                                          keyring: keyring, renewer: renewer, drainDeadline: drainDeadline)
                    }
                    intakes.addTask {
                        await self.intake(batchConsumer, lane: .batch, limiter: limiter, runner: runner, producer: producer,
                                          keyring: keyring, renewer: renewer, drainDeadline: drainDeadline)
                    }
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            logger.info("shutting down: no new jobs, draining those in flight")
            drainDeadline.value = MonotonicClock.now() + self.config.worker.drainSeconds
            consumer.stopDelivering()
            // Wakes an intake waiting for a slot, so the drain deadline is kept however
            // long the running jobs are.
            limiter.stop()
            batchConsumer.stopDelivering()
        }

        // What is done and not acknowledged, committed and waited for; the group's final
        // revoke then has nothing left to commit.
        let due = tracker.withLock { $0.revokeAll() }
        for (laneConsumer, offsets) in lanes.split(due) {
            do {
                try laneConsumer.commit(offsets, synchronously: true)
            } catch {
                logger.warning("final commit failed; the last finished jobs will be read again: \(error)")
            }
        }
        control.close()
        consumer.close()
        batchConsumer.close()
        // Bounded by what is left of the drain time (a broker that is away would
        // otherwise hold the exit for message.timeout.ms).
        let left = min(max(0.5, drainDeadline.value - MonotonicClock.now()), max(0.5, config.worker.drainSeconds))
        producer.shutdown(timeoutMs: Int32(clamping: Int64(saturating: left * 1000)))
        http.shutdown()
        redis.shutdown()
        logger.info("worker stopped")
    }

    /// Takes one lane's messages and runs them, `max_in_flight` at once over both lanes
    /// (batch within its share); then, once intake stops, lets the lane's running jobs
    /// finish within the drain time.
    private func intake(
        _ consumer: KafkaConsumer, lane: JobPriority, limiter: InFlightLimiter, runner: WorkerJobRunner, producer: KafkaProducer,
        keyring: JobKeyring?, renewer: ClaimRenewer, drainDeadline: DrainDeadline
    ) async {
        let tracker = self.tracker
        await withDiscardingTaskGroup { jobs in
            let flow = FlowControl(consumer)
            for await message in consumer.messages {
                // Shutting down: messages fetched before intake stopped are left
                // uncommitted for the next owner, not started.
                if drainDeadline.value.isFinite { break }
                if limiter.isFull(lane) { flow.pause() }
                // Cancelled while waiting: stop taking messages, as on shutdown.
                guard await limiter.acquire(lane) else { break }
                if drainDeadline.value.isFinite {
                    limiter.release()
                    break
                }
                // Resume here too: the jobs may all have finished between the
                // pause and the acquire, and then no release would resume.
                if !limiter.isFull(lane) { flow.resume() }
                // Fetched under an assignment that has ended (a revoke came while
                // it waited): not ours to run; the partition's owner reads it again.
                guard let ticket = tracker.withLock({ $0.begin(
                    message.topicPartition, generation: message.generation, offset: message.offset) })
                else {
                    limiter.release()
                    if !limiter.isFull(lane) { flow.resume() }
                    self.metrics.staleMessageSkipped()
                    continue
                }
                self.metrics.jobStarted()
                jobs.addTask {
                    defer {
                        limiter.release()
                        // A freed slot resumes fetching; waiting for the next
                        // message to do it would wait forever on paused partitions.
                        if !limiter.isFull(lane) { flow.resume() }
                        self.metrics.jobEnded()
                    }
                    await self.handle(message, lane: lane, ticket: ticket, runner: runner, producer: producer, keyring: keyring,
                                      renewer: renewer)
                }
            }
            // Intake stopped: let running jobs finish within the drain time.
            while limiter.inFlight > 0 {
                if MonotonicClock.now() > drainDeadline.value || Task.isCancelled {
                    logger.warning("drain time is up; cancelling the \(lane.rawValue) jobs in flight, they will be redelivered")
                    jobs.cancelAll()
                    break
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Commits what is committable, every `commitInterval` (100 ms).
    private func commitLoop(_ lanes: Lanes, redis: RedisConnection) async {
        var ticks = 0
        while !Task.isCancelled {
            // Cancelled at shutdown: the final commit, synchronous, takes what is left.
            guard (try? await Task.sleep(for: commitInterval)) != nil else { break }
            commitDue(lanes)
            ticks += 1
            if ticks % 50 == 0 {
                for (tp, behind) in lanes.interactive.lag() { metrics.lag(partition: tp.partition, behind: behind) }
                for (tp, behind) in lanes.batch.lag() { metrics.lag(partition: tp.partition, behind: behind, lane: .batch) }
                metrics.redisDropped(total: redis.droppedCommandCount)
            }
        }
    }

    /// Sends what is committable, each lane's offsets through its own consumer; it counts
    /// as committed once the broker answers (`onCommit`), and a failed commit is sent
    /// again on a later tick.
    private func commitDue(_ lanes: Lanes) {
        let due = tracker.withLock { $0.commitsDue() }
        guard !due.isEmpty else { return }
        for (consumer, offsets) in lanes.split(due) {
            do {
                try consumer.commit(offsets, synchronously: false)
            } catch {
                tracker.withLock { t in for o in offsets { t.commitFailed(o.topicPartition, offset: o.offset) } }
                logger.warning("commit failed, retrying: \(error)")
            }
        }
    }

    /// Applies cancel requests from the control topic.
    private func controlLoop(_ control: KafkaConsumer) async {
        for await message in control.messages {
            guard let request = CancelRequest.parse(
                message.value, key: message.keyString, timestampMs: message.timestampMs, receivedAt: Date().timeIntervalSince1970)
            else {
                logger.warning("ignoring a control message that is not {\"type\": \"cancel\", \"job_id\": ...}",
                               metadata: ["offset": "\(message.offset)"])
                continue
            }
            // A cancel older than the event TTL is ignored by the registry.
            if cancels.cancel(request) {
                logger.info("cancelling job on request", metadata: ["job_id": "\(request.jobID)"])
            }
        }
    }

    private func handle(
        _ message: KafkaMessage, lane topicLane: JobPriority, ticket: OffsetTracker.Ticket, runner: WorkerJobRunner,
        producer: KafkaProducer, keyring: JobKeyring?, renewer: ClaimRenewer
    ) async {
        // The trace the record carries on: every record this message leads to carries it
        // too, and every log line names it.
        let incoming = JobTrace.incoming(message)
        var logger = self.logger
        if let incoming { logger[metadataKey: "trace_id"] = "\(incoming.traceID)" }
        let job: Job
        /// A job read far enough to know its id, with a field out of its type or range:
        /// claimed and answered like any job, with a failed result naming the field.
        let rejection: SluiceError?
        switch read(message, keyring: keyring) {
        case .job(let read, let rejected):
            job = read
            rejection = rejected
        case .unreadable(let error):
            await sendToDLQ(message, error: error, incoming: incoming, ticket: ticket, producer: producer, logger: logger)
            return
        }

        // The job's span (tracing on) runs from here to its result's delivery.
        let trace = JobTrace(tracer: tracer, incoming: incoming, job: job)
        if let headers = trace.headers { logger[metadataKey: "trace_id"] = "\(headers.traceID)" }
        // Claiming and running are async functions of their own: a task keeps the memory of
        // its deepest frames until it ends, and every local of an async function has a
        // slot of its own in its frame, so the two phases share one region of the task's
        // memory instead of adding up for as long as the job runs.
        // Each ends the job's span.
        guard let claim = await claim(
            job, rejected: rejection != nil, message: message, ticket: ticket, runner: runner, producer: producer, trace: trace, logger: logger)
        else { return }
        await runClaimed(job, rejection: rejection, claim: claim, lane: topicLane, message: message, ticket: ticket,
                         runner: runner, producer: producer, renewer: renewer, trace: trace, logger: logger)
    }

    /// What a message holds.
    private indirect enum Reading {
        /// A job, or one read far enough to know its id with a field out of its type or
        /// range (`rejection`).
        case job(Job, rejection: SluiceError?)
        /// Not a job: it goes to the DLQ.
        case unreadable(any Error)
    }

    @inline(never)
    private func read(_ message: KafkaMessage, keyring: JobKeyring?) -> Reading {
        do {
            guard message.value.count <= config.worker.maxJobBytes else {
                throw SluiceError(.invalidJob, "the job is \(message.value.count) bytes, more than worker.max_job_bytes (\(config.worker.maxJobBytes))")
            }
            var parsed = try Job.parse(
                message.value, key: message.keyString,
                fallbackID: Job.derivedID(topic: message.topic, partition: message.partition, offset: message.offset),
                limits: JobLimits(config))
            if let sealed = parsed.sealedAPIKey {
                // A key this worker cannot open fails the job (its readers get an answer).
                do {
                    guard let keyring else {
                        throw SluiceError(.invalidJob, "the job's api_key is sealed and this worker has no job key: set kafka.job_key_env")
                    }
                    parsed.apiKey = try keyring.open(sealed, jobID: parsed.id)
                } catch var error as SluiceError {
                    error.context["job_id"] = parsed.id
                    throw error
                }
            }
            return .job(parsed, rejection: nil)
        } catch let error as SluiceError where error.context["job_id"] != nil {
            // Its tenant, if that one field is usable: the owner of the failed result.
            let tenant = (try? JSON.decode(JSONValue.self, from: message.value))?["tenant"]?.stringValue
                .flatMap { Job.isValidID($0) ? $0 : nil } ?? "default"
            return .job(Job(id: error.context["job_id"]!, request: .messages([]), tenant: tenant), rejection: error)
        } catch {
            return .unreadable(error)
        }
    }

    /// A claimed run of a job (or one running unclaimed while Redis is away).
    private struct Claim {
        var run: String
        var lastSeq = 0
        var claimed = false
        var spend: SpendCheck?
        var clearedBucket: RateLimiter.Bucket?
    }

    /// One run at a time; a finished job is answered from its stored result. The tenant's
    /// spend today comes with the claim when it has a daily limit, and so does whether
    /// the first provider's rate-limit bucket is clear, when it has no configured limit
    /// (then its first admission asks Redis nothing more). Nil when the job was answered
    /// without a run (a stored result, another tenant's id) or given up (shutdown): its
    /// span is then ended.
    @inline(never)
    private func claim(
        _ job: Job, rejected: Bool, message: KafkaMessage, ticket: OffsetTracker.Ticket, runner: WorkerJobRunner, producer: KafkaProducer,
        trace: JobTrace, logger: Logger
    ) async -> Claim? {
        var claim = Claim(run: Worker.newRunID())
        let firstBucket = !rejected ? runner.unlimitedFirstBucket(job) : nil
        while true {
            let spendLimit = !rejected ? config.quotas.spendLimitUSD(for: job.tenant) : nil
            let today = UsageDay(unixSeconds: Date().timeIntervalSince1970)
            switch await RunClaim.claim(
                jobID: job.id, run: claim.run, tenant: job.tenant, ttlSeconds: config.redis.eventTTLSeconds,
                spendOn: spendLimit.map { _ in today }, bucket: firstBucket, redis: runner.redis) {
            case .claimed(let seq, let spent, let bucketClear):
                claim.lastSeq = seq
                claim.claimed = true
                if let spendLimit, let spent { claim.spend = SpendCheck(limitUSD: spendLimit, spentMicroUSD: spent, day: today) }
                if bucketClear { claim.clearedBucket = firstBucket }
                return claim
            case .finished(let stored):
                logger.info("job already finished; producing its stored result again", metadata: ["job_id": "\(job.id)"])
                metrics.resultReplayed()
                trace.span?.addEvent("result replayed")
                await deliverResult(stored, of: job.id, for: message, ticket: ticket, producer: producer, trace: trace)
                trace.end(nil as RunResult?)
                return nil
            case .heldElsewhere:
                // A run on another worker (the partition's owner before a rebalance) is
                // still going: its result will be stored, or its lease will lapse.
                try? await Task.sleep(for: .milliseconds(250))
                if Task.isCancelled {
                    trace.end(nil as RunResult?)
                    return nil
                }
            case .unavailable:
                return claim  // Redis away: run unclaimed (at least once)
            case .ownedByAnotherTenant:
                // Nothing of this job may reach the other tenant's keys: its answer goes
                // to the result topic only, for the Kafka client that sent it.
                let refused = refuse(job, producedAtMs: message.timestampMs, runner: runner, logger: logger)
                await deliverResult(refused.json, of: job.id, for: message, ticket: ticket, producer: producer, trace: trace)
                trace.end(refused)
                return nil
            }
        }
    }

    /// The answer to a job whose id belongs to another tenant's job.
    @inline(never)
    private func refuse(_ job: Job, producedAtMs: Int64?, runner: WorkerJobRunner, logger: Logger) -> RunResult {
        logger.warning("job refused: its id belongs to another tenant", metadata: ["job_id": "\(job.id)"])
        let refused = runner.idConflict(job, producedAtMs: producedAtMs)
        metrics.finished(refused.response, tenant: job.tenant)
        return RunResult(response: refused.response, json: refused.json)
    }

    @inline(never)
    private func finished(_ result: RunResult, tenant: String) {
        metrics.finished(result.response, tenant: tenant)
    }

    /// Runs a claimed job and delivers its result; ends the job's span.
    @inline(never)
    private func runClaimed(
        _ job: Job, rejection: SluiceError?, claim: Claim, lane topicLane: JobPriority, message: KafkaMessage, ticket: OffsetTracker.Ticket,
        runner: WorkerJobRunner, producer: KafkaProducer, renewer: ClaimRenewer, trace: JobTrace, logger: Logger
    ) async {
        var ended: RunResult?
        defer { trace.end(ended) }
        let (run, lastSeq, claimed, spend, clearedBucket) = (claim.run, claim.lastSeq, claim.claimed, claim.spend, claim.clearedBucket)
        // The job runs in a task of its own so a cancel request can stop it alone; a
        // shutdown (this task cancelled) stops it too, and then no result is produced.
        let cancels = self.cancels
        // Decided once, when the cancel arrives: whether this run was stopped by its user
        // (a cancelled result) rather than by shutdown or a takeover (no result).
        let stoppedByUser = Flag()
        let work = Task {
            if let rejection {
                return await runner.reject(job.id, tenant: job.tenant, error: rejection, run: run, lastSeq: lastSeq, producedAtMs: message.timestampMs,
                                           logger: logger)
            }
            return await runner.run(job, run: run, lastSeq: lastSeq, producedAtMs: message.timestampMs,
                                    lane: job.priority ?? topicLane, spend: spend, clearedBucket: clearedBucket, trace: trace,
                                    cancelledByUser: { stoppedByUser.isSet || cancels.isCancelled(job) })
        }
        // A run whose lease lapsed and was taken over stops: two runs must never publish
        // into one job. Its ticket is of an ended epoch (the message went to whoever runs
        // it now), so leaving it uncompleted holds nothing up.
        let supersededBy = Flag()
        let renewal = claimed ? renewer.register(jobID: job.id, run: run) { [logger] in
            logger.warning("another run took this job over (this run's lease lapsed); stopping this one", metadata: ["job_id": "\(job.id)"])
            supersededBy.set()
            work.cancel()
        } : nil
        let token = cancels.register(job) {
            stoppedByUser.set()
            work.cancel()
        }
        if cancels.isCancelled(job) {
            stoppedByUser.set()
            work.cancel()
        }
        let outcome = await withTaskCancellationHandler { await work.value } onCancel: { work.cancel() }
        cancels.unregister(job.id, token: token)
        // Released after the run's last event and stored result (and after a renew of it
        // still on its way): whoever waits for the claim finds the result first.
        if let renewal { renewer.end(renewal, release: !supersededBy.isSet) }
        guard let outcome, !Task.isCancelled, !supersededBy.isSet else {
            // Cut off by shutdown's drain deadline (left uncommitted, so it is redelivered
            // rather than reported as cancelled), or taken over by another run.
            return
        }
        finished(outcome, tenant: job.tenant)
        ended = outcome
        guard !outcome.json.isEmpty else { return }
        await deliverResult(outcome.json, of: job.id, for: message, ticket: ticket, producer: producer, trace: trace)
    }


    /// Sends a message that is not a job to the DLQ with the reason, and completes its
    /// offset once the DLQ has it. Its own async function: `handle`'s frame lasts as long
    /// as the job, and this one's locals need not.
    private func sendToDLQ(
        _ message: KafkaMessage, error: any Error, incoming: TraceHeaders?, ticket: OffsetTracker.Ticket, producer: KafkaProducer,
        logger: Logger
    ) async {
        let reason = (error as? SluiceError)?.message ?? "\(error)"
        logger.warning("message sent to the DLQ: \(reason)", metadata: [
            "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
        ])
        metrics.sentToDLQ()
        let record = DLQRecord(message: message, error: reason)
        let topic = config.kafka.dlqTopic
        let headers = JobTrace(passingOn: incoming).kafkaHeaders
        switch await deliver(producer, topic: topic, key: record.key, value: (try? JSON.encode(record)) ?? [], headers: headers) {
        case .delivered:
            complete(ticket)
        case .permanent(let refusal):
            // Kept with its reason, its value cut short: the DLQ takes it, and the
            // partition moves on.
            metrics.recordRefused(topic: "dlq")
            logger.error("the DLQ refused the record (\(refusal)); sending it with its value cut to \(DLQRecord.cutValueBytes) bytes", metadata: [
                "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
            ])
            let cut = record.cutDown()
            await deliverReplacement(producer, topic: topic, key: cut.key, value: (try? JSON.encode(cut)) ?? [], headers: headers,
                                     for: message, ticket: ticket)
        case .cancelled:
            break
        }
    }

    /// A short random id naming one run of a job in its events and claim.
    static func newRunID() -> String {
        // Ten base-36 digits of one random UInt64 (36^10 < 2^52): the system generator
        // is a getrandom call per draw, and this runs once per job.
        var rng = SystemRandomNumberGenerator()
        var bits: UInt64 = rng.next()
        return String(unsafeUninitializedCapacity: 10) { out in
            for i in 0..<10 {
                out[i] = runIDAlphabet[Int(bits % 36)]
                bits /= 36
            }
            return 10
        }
    }

    /// How often at most the curl thread wakes Redis's thread for chunk events it queued:
    /// a millisecond bounds what a chunk can wait for its write.
    static let chunkWakeInterval: Duration = .milliseconds(1)

    private static let runIDAlphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)

    /// Produces a job's result, then completes its message. A result the broker refuses
    /// for good (too large, not authorized) ends the job all the same: a cut-down
    /// `failed` one goes in its place, and the full one stays stored in Redis.
    func deliverResult(
        _ value: [UInt8], of jobID: String, for message: KafkaMessage, ticket: OffsetTracker.Ticket, producer: some RecordProducer,
        trace: JobTrace
    ) async {
        let topic = config.kafka.resultsTopic
        let key = Array(jobID.utf8)
        let headers = trace.kafkaHeaders
        switch await deliver(producer, topic: topic, key: key, value: value, headers: headers) {
        case .delivered:
            complete(ticket)
        case .permanent(let refusal):
            metrics.recordRefused(topic: "results")
            let error = UnifiedResponse.refusedError(
                tooLarge: refusal.isTooLarge, reason: refusal.message, resultBytes: value.count,
                limitBytes: config.kafka.maxMessageBytes, jobID: jobID, keptSeconds: config.redis.eventTTLSeconds)
            logger.error("the results topic refused the result; producing a cut-down failed result instead: \(error.message)",
                         metadata: ["job_id": "\(jobID)"])
            // Read back from the bytes: a result replayed from Redis has no other form.
            let cut = (try? JSON.decode(UnifiedResponse.self, from: value)).flatMap { try? JSON.encode($0.cutDown(error: error)) }
            await deliverReplacement(producer, topic: topic, key: key, value: cut ?? [], headers: headers, for: message, ticket: ticket)
        case .cancelled:
            break
        }
    }

    enum Delivery {
        case delivered
        /// The broker refused the message for good (`KafkaError.isPermanent`).
        case permanent(KafkaError)
        /// The worker is shutting down; the message stays uncommitted.
        case cancelled
    }

    /// Delivers the cut-down record that replaces one the broker refused for good, then
    /// completes the message: its job has ended. Refused too (a topic this worker may not
    /// write to), the job still ends, with an error in the log; only a shutdown leaves
    /// it uncommitted.
    private func deliverReplacement(_ producer: some RecordProducer, topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader],
                                    for message: KafkaMessage, ticket: OffsetTracker.Ticket) async {
        switch await deliver(producer, topic: topic, key: key, value: value, headers: headers) {
        case .delivered:
            complete(ticket)
        case .permanent(let refusal):
            logger.error("\(topic) refused the cut-down record too (\(refusal)); the message is committed without one", metadata: [
                "topic": "\(message.topic)", "partition": "\(message.partition)", "offset": "\(message.offset)",
            ])
            complete(ticket)
        case .cancelled:
            break
        }
    }

    /// Produces until acknowledged, retrying while the broker is away; gives up when the
    /// broker refuses the message for good (too large, not authorized), or when the
    /// worker is cancelled (the message then stays uncommitted).
    private func deliver(_ producer: some RecordProducer, topic: String, key: [UInt8]?, value: [UInt8],
                         headers: [KafkaHeader]) async -> Delivery {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        while true {
            do {
                try await producer.send(topic: topic, key: key, value: value, headers: headers)
                return .delivered
            } catch {
                if let refusal = error as? KafkaError, refusal.isPermanent { return .permanent(refusal) }
                if Task.isCancelled { return .cancelled }
                switch deliveryFailures.admit(topic) {
                case .first: logger.warning("producing to \(topic) failed, retrying until the broker takes it: \(error)")
                case .summary(let count): logger.warning("producing to \(topic) still fails (\(count) times in the last \(deliveryFailures.interval)), retrying: \(error)")
                case .suppressed: break
                }
                try? await Task.sleep(for: backoff.nextDelay())
            }
        }
    }

    private func complete(_ ticket: OffsetTracker.Ticket) {
        tracker.withLock { _ = $0.complete(ticket) }
    }
}

/// The job runner the worker runs: events to Redis, providers over libcurl.
typealias WorkerJobRunner = JobRunner<RedisConnection, CurlClient>

/// Where the worker's results and DLQ records go: the Kafka producer, or in tests one
/// that holds an acknowledgement back. `send` returns once the broker acknowledged the
/// record, and throws `KafkaError` (`isPermanent` for a refusal that retrying cannot
/// change).
protocol RecordProducer: Sendable {
    func send(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader]) async throws
}

extension KafkaProducer: RecordProducer {}

/// The offset tracker, shared by the job tasks, the committer and the rebalance callback.
final class SharedTracker: Sendable {
    private let mutex = Mutex(OffsetTracker())

    func withLock<R>(_ body: (inout OffsetTracker) -> R) -> R {
        mutex.withLock { body(&$0) }
    }
}

/// A one-way flag, safe from any thread.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// The two lanes' consumers.
struct Lanes: Sendable {
    let interactive: KafkaConsumer
    let batch: KafkaConsumer
    let batchTopic: String

    /// Offsets to commit, grouped by the consumer whose group owns them.
    func split(_ due: [(TopicPartition, Int64)]) -> [(KafkaConsumer, [TopicPartitionOffset])] {
        let offsets = due.map { TopicPartitionOffset($0.0, offset: $0.1) }
        let batchOffsets = offsets.filter { $0.topicPartition.topic == batchTopic }
        let interactiveOffsets = offsets.filter { $0.topicPartition.topic != batchTopic }
        return [(interactive, interactiveOffsets), (batch, batchOffsets)].filter { !$0.1.isEmpty }
    }
}

/// When a graceful shutdown must be done: set when it begins.
final class DrainDeadline: Sendable {
    private let deadline = Mutex(Double.infinity)
    var value: Double {
        get { deadline.withLock { $0 } }
        set { deadline.withLock { $0 = newValue } }
    }
}

/// Pauses the consumer's partitions when the worker is full and resumes them when a slot
/// frees, whichever task sees it first.
final class FlowControl: Sendable {
    private let consumer: KafkaConsumer
    private let paused = Mutex(false)

    init(_ consumer: KafkaConsumer) { self.consumer = consumer }

    // The librdkafka calls happen under the lock, so a pause and a resume from two tasks
    // reach the consumer in the order their flag changes did.
    func pause() {
        paused.withLock { p in
            if !p { consumer.pause() }
            p = true
        }
    }

    func resume() {
        paused.withLock { p in
            if p { consumer.resume() }
            p = false
        }
    }
}
