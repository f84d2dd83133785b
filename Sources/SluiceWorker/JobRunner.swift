import Foundation
import Logging
import SluiceCore
import SluiceHTTPClient
import SluiceProviders
import SluiceRedis
import SluiceSupport
import Tracing

/// How a run ended: its response and that response's JSON, encoded once for Redis and
/// the result topic. A reference, so that the async frames it passes through on its way
/// to the result topic hold a pointer rather than a copy of the response.
final class RunResult: Sendable {
    let response: UnifiedResponse
    let json: [UInt8]

    init(response: UnifiedResponse, json: [UInt8]) {
        self.response = response
        self.json = json
    }
}

/// Runs one job against its providers, publishing its events, and builds its final
/// unified response. Retries retryable failures with backoff while nothing has been
/// published for the attempt, then moves to the job's fallbacks.
///
/// Generic over where its events go and how it reaches providers (`RedisConnection` and
/// `CurlClient` in the worker; recorders and scripted providers in its unit tests), so the
/// per-chunk path makes no dynamic call.
struct JobRunner<Redis: RedisCommandSink, Transport: ProviderTransport>: Sendable {
    var config: SluiceConfig { parts.config }
    var providers: ProviderRunner<Transport> { parts.providers }
    var redis: Redis { parts.redis }
    var prices: PriceTable { parts.prices }
    var logger: Logger { parts.logger }
    var environment: [String: String] { parts.environment }
    var metrics: WorkerMetrics { parts.metrics }
    var limiter: RateLimiter { parts.limiter }
    /// What the runner holds, by reference: a job's async frames hold a copy of the runner
    /// for each call of one of its methods, for as long as the job runs.
    private let parts: Parts
    /// Whether something wakes Redis's thread once per round of the transport's thread
    /// (the worker has its `CurlClient` do so): chunk events are then queued without a
    /// wake each. Off, each chunk event wakes the thread if it sleeps.
    var chunkEventsWakePerRound = false
    /// Waits between attempts, in seconds; tests record the delays instead of waiting.
    var sleep: @Sendable (Double) async -> Void = { try? await Task.sleep(for: .seconds(saturating: $0)) }

    init(
        config: SluiceConfig, providers: ProviderRunner<Transport>, redis: Redis, prices: PriceTable, logger: Logger,
        environment: [String: String], metrics: WorkerMetrics, limiter: RateLimiter, chunkEventsWakePerRound: Bool = false
    ) {
        self.chunkEventsWakePerRound = chunkEventsWakePerRound
        self.parts = Parts(
            config: config, providers: providers, redis: redis, prices: prices, logger: logger, environment: environment, metrics: metrics,
            limiter: limiter)
    }

    private final class Parts: Sendable {
        let config: SluiceConfig
        let providers: ProviderRunner<Transport>
        let redis: Redis
        let prices: PriceTable
        let logger: Logger
        let environment: [String: String]
        let metrics: WorkerMetrics
        let limiter: RateLimiter

        init(
            config: SluiceConfig, providers: ProviderRunner<Transport>, redis: Redis, prices: PriceTable, logger: Logger,
            environment: [String: String], metrics: WorkerMetrics, limiter: RateLimiter
        ) {
            self.config = config
            self.providers = providers
            self.redis = redis
            self.prices = prices
            self.logger = logger
            self.environment = environment
            self.metrics = metrics
            self.limiter = limiter
        }
    }

    /// - Parameter run: this run's id, carried by every event.
    /// - Parameter lastSeq: the last event seq of the runs before this one (0 for none).
    /// - Parameter spend: the tenant's spend today against its daily limit, read when the
    ///   run was claimed; an exhausted one fails the job `quota_exceeded` before any call.
    /// - Parameter cancelledByUser: whether a cancel request for this job has arrived;
    ///   tells a user's cancel (a `cancelled` result) from a shutdown (no result at all).
    /// Returns the response and its JSON, encoded once for Redis and the result topic;
    /// nil when the run was cut off by shutdown: then no final event is published and no
    /// result stored, and the job's readers wait for the run that takes it over.
    /// - Parameter trace: the job's trace: each provider attempt is a span of it (tracing
    ///   on) and sends its context to the provider.
    /// - Parameter clearedBucket: the rate-limit bucket Redis said was clear when the run
    ///   was claimed (`unlimitedFirstBucket`): the first admission to it asks Redis
    ///   nothing more.
    func run(
        _ job: Job, run: String, lastSeq: Int, producedAtMs: Int64?, lane: JobPriority = .interactive,
        spend: SpendCheck? = nil, clearedBucket: RateLimiter.Bucket? = nil, trace: JobTrace = .untraced,
        cancelledByUser: @Sendable () -> Bool = { false }
    ) async -> RunResult? {
        let startedWall = WallClock.now()
        let queueWait = producedAtMs.map { max(0, startedWall - Double($0) / 1000) }
        var logger = trace.logging(self.logger)
        logger[metadataKey: "job_id"] = "\(job.id)"
        logger[metadataKey: "run"] = "\(run)"

        var events = JobEvents(
            jobID: job.id, run: run, tenant: job.tenant, redis: redis, ttlSeconds: config.redis.eventTTLSeconds, lastSeq: lastSeq)

        // The latest moment the job may start, on the monotonic clock: its own deadline,
        // else as long as its lane may wait for a rate limit.
        let startBy = job.startBy(producedAt: producedAtMs.map { Double($0) / 1000 })
        let waitBound = waitBound(job, lane: lane)
        let startByMonotonic = MonotonicClock.now() + ((startBy ?? startedWall + waitBound.seconds) - startedWall)
        var progress = Progress()
        var reply: Reply
        do {
            if cancelledByUser() {
                throw AttemptsError(underlying: SluiceError(.cancelled, "the job was cancelled before it started"), attempts: 0)
            }
            if let spend, spend.isExhausted {
                metrics.quotaRefused(tenant: job.tenant)
                throw AttemptsError(underlying: SluiceError(
                    .quotaExceeded, spend.message(who: "the job's tenant") + "; the provider was not called"), attempts: 0)
            }
            if let startBy, startedWall >= startBy {
                throw AttemptsError(underlying: SluiceError(
                    .expired, "the job could not start before its deadline (\(JobRunner.timestamp(startBy))); the provider was not called"),
                    attempts: 0)
            }
            reply = try await attempt(job, events: &events, lane: lane, startBy: startByMonotonic, startByWall: startBy,
                                         waitBound: waitBound, progress: &progress, queueWait: queueWait, clearedBucket: clearedBucket,
                                         trace: trace, logger: logger)
        } catch {
            if Task.isCancelled && !cancelledByUser() {
                logger.info("run cut off by shutdown; the job will run again where its partition goes")
                return nil
            }
            reply = failed(job, error: error, cancelledByUser: cancelledByUser(), queueWait: queueWait, progress: progress,
                           events: &events, logger: logger)
        }
        return finish(reply, events: &events)
    }

    /// A response on its way from an attempt to `finish`, by reference: a copy of the
    /// (large) response in each async frame it passes through would last as long as the job.
    private final class Reply: Sendable {
        let response: UnifiedResponse
        init(_ response: UnifiedResponse) { self.response = response }
    }

    /// The response of a run that failed with `error`, its failure event published.
    @inline(never)
    private func failed(
        _ job: Job, error: any Error, cancelledByUser: Bool, queueWait: Double?, progress: Progress, events: inout JobEvents<Redis>,
        logger: Logger
    ) -> Reply {
        var failure = JobRunner.errorInfo(error)
        if cancelledByUser {
            failure = .init(type: "cancelled", message: "the job was cancelled on request")
        }
        let status: UnifiedResponse.Status =
            failure.type == "cancelled" ? .cancelled : failure.type == "timeout" ? .timedOut : .failed
        let underlying = (error as? AttemptsError)?.underlying ?? error
        var metadata: Logger.Metadata = [:]
        if let detail = (underlying as? ProviderError)?.detail { metadata["detail"] = "\(detail)" }
        logger.warning("job \(status.rawValue): \(failure.message)", metadata: metadata)
        let response = failedResponse(job, error: failure, status: status, queueWait: queueWait,
                                      attempts: (error as? AttemptsError)?.attempts ?? 0,
                                      partial: (underlying as? ProviderError)?.partial, rateLimitWait: progress.rateLimitWait)
        events.emit(.chatResponseFailure, encoding: ["error": failure])
        return Reply(response)
    }

    /// Answers a job whose id could be read but whose fields are invalid (`error`, from
    /// `Job.parse`) as any failed job is answered: a `chat_response_failure` event, a
    /// stored `failed` result with error `invalid_job`, `chat_finished`.
    @inline(never)
    func reject(
        _ jobID: String, tenant: String, error: SluiceError, run: String, lastSeq: Int, producedAtMs: Int64?, logger: Logger? = nil
    ) async -> RunResult? {
        let logger = logger ?? self.logger
        let queueWait = producedAtMs.map { max(0, WallClock.now() - Double($0) / 1000) }
        logger.warning("job failed: \(error.message)", metadata: ["job_id": "\(jobID)", "run": "\(run)"])
        var events = JobEvents(
            jobID: jobID, run: run, tenant: tenant, redis: redis, ttlSeconds: config.redis.eventTTLSeconds, lastSeq: lastSeq)
        // Nothing else of the job is trusted: a request with nothing to run stands in.
        let unread = Job(id: jobID, request: .messages([]), tenant: tenant)
        let failure = JobRunner.errorInfo(error)
        let response = failedResponse(unread, error: failure, status: .failed, queueWait: queueWait, attempts: 0)
        events.emit(.chatResponseFailure, encoding: ["error": failure])
        return finish(Reply(response), events: &events)
    }

    /// Publishes the end of a job: the response event (when it succeeded), the stored
    /// result and `chat_finished`; then, unless `worker.compact_finished_replay` is off,
    /// leaves only the lifecycle events in its replay.
    @inline(never)
    private func finish(_ reply: Reply, events: inout JobEvents<Redis>) -> RunResult {
        var response = reply.response
        response.omitInput(largerThan: config.worker.echoInputMaxBytes)
        let json = (try? JSON.encode(response)) ?? []
        if response.status == .succeeded { events.emit(.chatCompletionResponse, data: json) }
        events.storeResult(json, response: response, finishedAt: WallClock.now())
        events.emit(.chatFinished, ["status": .string(response.status.rawValue)])
        if config.worker.compactFinishedReplay { events.compactReplay() }
        return RunResult(response: response, json: json)
    }

    /// How long a job without a deadline may wait for a rate limit: an interactive job
    /// its timeout, a batch job `worker.max_rate_limit_wait_s`.
    @inline(never)
    func waitBound(_ job: Job, lane: JobPriority) -> (seconds: Double, name: String) {
        switch lane {
        case .interactive:
            if let t = job.timeoutSeconds { return (t, "its timeout_s (\(t) s)") }
            return (config.worker.defaultTimeoutSeconds, "worker.default_timeout_s (\(config.worker.defaultTimeoutSeconds) s)")
        case .batch:
            return (config.worker.maxRateLimitWaitSeconds, "worker.max_rate_limit_wait_s (\(config.worker.maxRateLimitWaitSeconds) s)")
        }
    }

    /// What a run has spent waiting so far.
    struct Progress {
        /// Seconds held by the rate limiter or by the provider's 429s.
        var rateLimitWait = 0.0
    }

    static func timestamp(_ seconds: Double) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: seconds))
    }

    /// The tokens a request is charged before it is sent: its prompt (about four bytes a
    /// token) plus the most it may generate.
    @inline(never)
    static func estimatedTokens(messages: [JSONValue], parameters: [String: JSONValue]) -> Int {
        let limit = parameters["max_tokens"]?.doubleValue ?? parameters["max_completion_tokens"]?.doubleValue ?? 0
        let maxTokens = limit.isFinite && limit > 0 ? Int(min(limit, 10_000_000)) : 0
        return TokenEstimator.promptTokens(messages) + maxTokens
    }

    /// The answer for a job whose id another tenant's job holds: a `failed` result with
    /// `id_conflict`, for the result topic only; nothing of it reaches the job's keys.
    @inline(never)
    func idConflict(_ job: Job, producedAtMs: Int64?) -> (response: UnifiedResponse, json: [UInt8]) {
        let queueWait = producedAtMs.map { max(0, WallClock.now() - Double($0) / 1000) }
        let failure = UnifiedResponse.ErrorInfo(
            type: "id_conflict", message: "the job id \"\(job.id)\" is in use by another tenant's job; submit with another id")
        var response = failedResponse(job, error: failure, status: .failed, queueWait: queueWait, attempts: 0)
        response.omitInput(largerThan: config.worker.echoInputMaxBytes)
        return (response, (try? JSON.encode(response)) ?? [])
    }

    /// `chat_completion_request`'s data: the body sent, spliced in as it is (it is JSON
    /// Sluice just wrote; the key travels in a header, never in it). A body over
    /// `maxBodyBytes` is left out like a long input in the result: `body: null`,
    /// `body_omitted: true` and its size in `body_bytes`.
    static func requestEvent(provider: String, model: String, body: [UInt8], maxBodyBytes: Int = .max) -> [UInt8] {
        let omitted = body.count > maxBodyBytes
        var out: [UInt8] = []
        out.reserveCapacity((omitted ? 0 : body.count) + provider.utf8.count + model.utf8.count + 80)
        out.append(contentsOf: #"{"provider":"#.utf8)
        JSON.appendString(provider, to: &out)
        out.append(contentsOf: #","model":"#.utf8)
        JSON.appendString(model, to: &out)
        out.append(contentsOf: #","body":"#.utf8)
        out.append(contentsOf: body.isEmpty || omitted ? Array("null".utf8) : body)
        if omitted { out.append(contentsOf: #","body_omitted":true,"body_bytes":\#(body.count)"#.utf8) }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The failure of a job after every attempt, carrying how many there were.
    struct AttemptsError: Error {
        var underlying: any Error
        var attempts: Int
    }

    /// The rate-limit bucket of the job's first target when that provider has no
    /// configured limit: the run claim asks Redis whether it is clear (`RateLimiter`).
    /// Nil for a job whose target needs resolving from a template, or that has a limit.
    @inline(never)
    func unlimitedFirstBucket(_ job: Job) -> RateLimiter.Bucket? {
        if case .prompt = job.request { return nil }
        guard let request = try? resolve(job),
              let (provider, _) = try? config.resolve(provider: request.provider, model: request.model),
              provider.rpm == nil, provider.tpm == nil
        else { return nil }
        let apiKey = job.apiKey ?? provider.apiKeyEnv.flatMap { environment[$0] }.map(Secret.init)
        return RateLimiter.Bucket(provider: provider.name, baseURL: provider.baseURL, apiKey: apiKey)
    }

    private func attempt(
        _ job: Job, events: inout JobEvents<Redis>, lane: JobPriority, startBy: Double, startByWall: Double?,
        waitBound: (seconds: Double, name: String), progress: inout Progress, queueWait: Double?, clearedBucket: RateLimiter.Bucket?,
        trace: JobTrace, logger: Logger
    ) async throws -> Reply {
        let request = try resolve(job)
        let messages = request.messages
        var targets = [ModelTarget(provider: request.provider, model: request.model ?? "")]
        targets += job.fallbacks
        var attempts = 0
        var lastError: any Error = SluiceError(.internal, "no attempt was made")
        // `timeout_s` counts from the first admission the provider did not answer 429:
        // time held by a rate limit is bounded by the job's deadline instead.
        var deadline: Double?
        let timeout = job.timeoutSeconds ?? config.worker.defaultTimeoutSeconds
        var rateLimited = 0
        var chunkGate = ChunkEventGate(jobID: job.id, lane: lane, mode: config.worker.batchChunkEvents)
        // The last target's retries stopped because the job's timeout left no room for
        // the next one: its last error.
        var outOfTime: (any Error)?

        for (targetIndex, target) in targets.enumerated() {
            let provider: SluiceConfig.Provider
            let model: String
            do {
                (provider, model) = try resolve(target)
            } catch {
                if targetIndex == 0 { throw error }
                lastError = error
                continue
            }
            let format = try WireFormats.format(for: provider.kind)
            var call = makeCall(job, provider: provider, model: model, request: request)
            let bucket = RateLimiter.Bucket(provider: provider.name, baseURL: provider.baseURL, apiKey: call.apiKey)
            let estimate = JobRunner.estimatedTokens(messages: messages, parameters: request.parameters)

            var retry = 0
            outOfTime = nil
            retrying: while retry < config.worker.maxAttempts {
                if Task.isCancelled { throw AttemptsError(underlying: CancellationError(), attempts: attempts) }
                // Wait for the shared rate limit (and any hold a 429 set); this spends
                // neither an attempt nor a connection.
                let admitBy = deadline ?? startBy
                // Only the job's first admission may use what the claim read of the bucket.
                let cleared = attempts == 0 && rateLimited == 0 && targetIndex == 0 && clearedBucket == bucket
                do {
                    progress.rateLimitWait += try await limiter.admit(
                        bucket, rpm: provider.rpm, tpm: provider.tpm, cost: estimate, lane: lane, deadline: admitBy, cleared: cleared)
                } catch let expired as RateLimiter.Expired {
                    progress.rateLimitWait += expired.waited
                    throw JobRunner.rateLimitExpired(
                        provider: provider.name, timedOut: deadline != nil, startByWall: startByWall, waitBound: waitBound,
                        rateLimited: rateLimited, lastError: lastError, attempts: attempts)
                } catch {
                    throw AttemptsError(underlying: CancellationError(), attempts: attempts)
                }
                if deadline == nil { deadline = MonotonicClock.now() + timeout }
                let runDeadline = deadline ?? MonotonicClock.now() + timeout
                attempts += 1
                retry += 1
                let remaining = runDeadline - MonotonicClock.now()
                guard remaining > 0 else {
                    throw AttemptsError(underlying: SluiceError(.timeout, "the job ran past its timeout"), attempts: attempts - 1)
                }
                call.totalTimeout = .seconds(saturating: remaining)
                await chunkGate.refresh(redis: redis)
                JobRunner.emitStarted(provider: provider.name, model: model, attempt: attempts, events: &events)

                // A span per attempt (tracing on), ended with this iteration.
                let attemptSpan = trace.startAttempt(provider: provider.name, model: model, attempt: attempts)
                defer { attemptSpan?.end() }
                var published = 0
                do {
                    let httpRequest = try self.httpRequest(call, format: format, span: attemptSpan, trace: trace,
                                                  echoBody: attempts == 1 && rateLimited == 0, events: &events)
                    // The attempt's chunk events go out from where the provider's bytes
                    // arrive; the relay holds the run's events and gate meanwhile.
                    let relay = ChunkRelay(events: events, gate: chunkGate, span: attemptSpan, wakesPerRound: chunkEventsWakePerRound)
                    defer {
                        events = relay.events
                        chunkGate = relay.gate
                        published = relay.published
                    }
                    let outcome = try await providers.run(call, format: format, request: httpRequest, sink: relay)
                    return try completed(
                        job, outcome: outcome, provider: provider, model: model, request: request, bucket: bucket, cleared: cleared,
                        estimate: estimate, published: relay.published, attempts: attempts, queueWait: queueWait,
                        rateLimitWait: progress.rateLimitWait)
                } catch {
                    lastError = error
                    var failed = FailedAttempt(attempts: attempts, retry: retry, deadline: deadline, rateLimited: rateLimited)
                    let next = afterFailure(
                        error, span: attemptSpan, published: published, state: &failed, provider: provider, bucket: bucket,
                        cleared: cleared, estimate: estimate, runDeadline: runDeadline, logger: logger)
                    (attempts, retry, deadline, rateLimited) = (failed.attempts, failed.retry, failed.deadline, failed.rateLimited)
                    switch next {
                    case .fail(let error): throw error
                    case .queueAgain: continue
                    case .nextTarget: break retrying
                    case .outOfTime:
                        outOfTime = error
                        break retrying
                    case .retry(let delay): await sleep(delay)
                    }
                }
            }
        }
        if let last = outOfTime {
            throw JobRunner.outOfTime(last, timeout: timeout, attempts: attempts)
        }
        throw AttemptsError(underlying: lastError, attempts: attempts)
    }

    /// The counters of a target's attempts that a failed one changes.
    private struct FailedAttempt {
        var attempts: Int
        var retry: Int
        var deadline: Double?
        var rateLimited: Int
    }

    /// What to do after a failed attempt.
    private indirect enum NextStep {
        case fail(AttemptsError)
        /// A 429: queue for the rate limit again; it spent no attempt.
        case queueAgain
        case nextTarget
        /// No time left for this target's next attempt: a fallback may still run in what
        /// remains; if none does, the job timed out.
        case outOfTime
        case retry(after: Double)
    }

    /// A response that came: the bucket learns of it, and a stream that ended without its
    /// end marker is an error.
    @inline(never)
    private func completed(
        _ job: Job, outcome: ProviderOutcome, provider: SluiceConfig.Provider, model: String, request: ResolvedRequest,
        bucket: RateLimiter.Bucket, cleared: Bool, estimate: Int, published: Int, attempts: Int, queueWait: Double?, rateLimitWait: Double
    ) throws -> Reply {
        limiter.observe(bucket, headers: outcome.rateLimit, rateLimited: false)
        // A cleared admission charged no tokens: nothing to correct.
        if let used = outcome.accumulator.usage?.totalTokens, !cleared {
            limiter.settle(bucket, tpm: provider.tpm, estimated: estimate, actual: used)
        }
        if !outcome.streamComplete {
            var incomplete = ProviderError(
                .protocolError, "the provider's stream ended before its end marker", retryable: published == 0)
            // What was streamed goes into the failed result, its tokens counted.
            incomplete.partial = outcome
            throw incomplete
        }
        return Reply(succeeded(job, provider: provider.name, model: model, request: request,
                               outcome: outcome, attempts: attempts, queueWait: queueWait, rateLimitWait: rateLimitWait))
    }

    /// Decides what follows a failed attempt, and notes it on its span.
    @inline(never)
    private func afterFailure(
        _ error: any Error, span: (any Span)?, published: Int, state: inout FailedAttempt, provider: SluiceConfig.Provider,
        bucket: RateLimiter.Bucket, cleared: Bool, estimate: Int, runDeadline: Double, logger: Logger
    ) -> NextStep {
        if let span {
            let failure = JobRunner.errorInfo(error)
            if let status = failure.providerStatus { span.attributes["http.response.status_code"] = status }
            span.fail("\(failure.type): \(failure.message)")
        }
        if Task.isCancelled { return .fail(AttemptsError(underlying: error, attempts: state.attempts)) }
        // Something of this attempt was relayed: a retry would repeat it.
        guard let pe = error as? ProviderError, published == 0 else {
            return .fail(AttemptsError(underlying: error, attempts: state.attempts))
        }
        if pe.status == 429 && pe.retryable {
            // A rate limit is a wait, not a failed attempt: hold the bucket for every
            // worker as the provider asked, and queue for it again.
            state.attempts -= 1
            state.retry -= 1
            // Not started yet: the timeout counts from a request that is not refused.
            if state.attempts == 0 { state.deadline = nil }
            if !cleared { limiter.settle(bucket, tpm: provider.tpm, estimated: estimate, actual: 0) }
            let hold = limiter.observe(bucket, headers: pe.rateLimit ?? RateLimitHeaders(retryAfter: pe.retryAfter),
                                       rateLimited: true, fallbackHold: JobRunner.backoff(retry: state.rateLimited, retryAfter: nil))
            state.rateLimited += 1
            logger.info("\(provider.name) answered 429; waiting for its limit", metadata: ["hold_s": "\(hold)"])
            return .queueAgain
        }
        if !pe.retryable {
            // The provider refused the request itself (400, 401, 403, 404, 422), or it
            // cannot be sent at all: fail at once with that error. Anything else: the
            // next target.
            if let status = pe.status, (400..<500).contains(status) {
                return .fail(AttemptsError(underlying: error, attempts: state.attempts))
            }
            if pe.kind == .invalidRequest { return .fail(AttemptsError(underlying: error, attempts: state.attempts)) }
            return .nextTarget
        }
        guard state.retry < config.worker.maxAttempts else { return .nextTarget }
        let delay = JobRunner.backoff(retry: state.retry - 1, retryAfter: pe.retryAfter)
        guard MonotonicClock.now() + delay < runDeadline else { return .outOfTime }
        logger.info("retrying after \(pe)", metadata: [
            "attempt": "\(state.attempts)", "delay_s": "\(delay)", "detail": "\(pe.detail ?? "")",
        ])
        metrics.retried(provider: provider.name)
        return .retry(after: delay)
    }

    /// `last`: the `ProviderError` that `afterFailure` answered `.outOfTime` to.
    @inline(never)
    private static func outOfTime(_ last: any Error, timeout: Double, attempts: Int) -> AttemptsError {
        var context: [String: String] = [:]
        let last = last as? ProviderError
        if let status = last?.status { context["provider_status"] = "\(status)" }
        return AttemptsError(underlying: SluiceError(
            .timeout,
            "the job's timeout_s (\(timeout) s) left no time for another attempt after \(attempts); last error: \(last?.message ?? "")",
            context: context), attempts: attempts)
    }

    @inline(never)
    private func resolve(_ target: ModelTarget) throws -> (SluiceConfig.Provider, String) {
        try config.resolve(provider: target.provider, model: target.model.isEmpty ? nil : target.model)
    }

    /// One target's call, as the job asks for it.
    @inline(never)
    private func makeCall(_ job: Job, provider: SluiceConfig.Provider, model: String, request: ResolvedRequest) -> ProviderCall {
        var call = ProviderCall(
            provider: provider, model: model, messages: request.messages, parameters: request.parameters, stream: job.stream,
            apiKey: job.apiKey ?? provider.apiKeyEnv.flatMap { environment[$0] }.map(Secret.init))
        call.idleTimeout = .seconds(saturating: config.worker.idleTimeoutSeconds)
        call.firstTokenTimeout = config.worker.firstTokenTimeoutSeconds.map { .seconds(saturating: $0) }
        if case .passthrough(let body) = job.request {
            call.passthroughBody = body
            call.stream = body["stream"]?.boolValue ?? false
        }
        return call
    }

    /// An attempt's HTTP request, its `chat_completion_request` event published.
    @inline(never)
    private func httpRequest(
        _ call: ProviderCall, format: any WireFormat, span: (any Span)?, trace: JobTrace, echoBody: Bool, events: inout JobEvents<Redis>
    ) throws -> CurlRequest {
        var httpRequest = try format.makeRequest(call)
        if let context = trace.headers(of: span) {
            for field in context.fields { httpRequest.headers[field.name] = field.value }
        }
        // The body goes out once per job: a retry or a fallback names its target with
        // `"body": null`, so retries cannot multiply a large request in Redis.
        events.emit(.chatCompletionRequest, data: JobRunner.requestEvent(
            provider: call.provider.name, model: call.model, body: echoBody ? httpRequest.body : [],
            maxBodyBytes: config.worker.echoInputMaxBytes))
        return httpRequest
    }

    @inline(never)
    private static func emitStarted(provider: String, model: String, attempt: Int, events: inout JobEvents<Redis>) {
        events.emit(.chatStarted, ["provider": .string(provider), "model": .string(model), "attempt": .number(Double(attempt))])
    }

    /// The failure of a job whose admission to `provider`'s rate limit ran out of time.
    @inline(never)
    private static func rateLimitExpired(
        provider: String, timedOut: Bool, startByWall: Double?, waitBound: (seconds: Double, name: String), rateLimited: Int,
        lastError: any Error, attempts: Int
    ) -> AttemptsError {
        if timedOut {
            return AttemptsError(underlying: SluiceError(.timeout, "the job ran past its timeout waiting for \(provider)'s rate limit"), attempts: attempts)
        }
        let by = startByWall.map { "its deadline (\(JobRunner.timestamp($0)))" } ?? waitBound.name
        var why = "waiting for \(provider)'s rate limit"
        var context: [String: String] = [:]
        if rateLimited > 0, let last = lastError as? ProviderError {
            why = "held by \(provider)'s rate limit (answered 429 \(rateLimited) times; last: \(last.message))"
            context["provider_status"] = "429"
        }
        return AttemptsError(underlying: SluiceError(.expired, "the job could not start before \(by): \(why)", context: context),
                             attempts: attempts)
    }

    /// The delays between provider attempts: 250 ms doubling to 8 s, each between half
    /// and all of that.
    static var retryBackoff: Backoff { Backoff(initial: .milliseconds(250), maximum: .seconds(8), jitter: 0.5...1) }

    /// The delay before retry number `retry` (0 for the first) in seconds, at least what
    /// `Retry-After` asked for.
    static func backoff(retry: Int, retryAfter: Double?) -> Double {
        let (seconds, attoseconds) = retryBackoff.delay(attempt: retry).components
        return max(Double(seconds) + Double(attoseconds) / 1e18, retryAfter ?? 0)
    }

    /// What a job asks for, with templates rendered and defaults applied.
    struct ResolvedRequest {
        var messages: [JSONValue]
        var chatInput: String?
        var provider: String?
        var model: String?
        var parameters: [String: JSONValue]
    }

    @inline(never)
    func resolve(_ job: Job) throws -> ResolvedRequest {
        func lastUser(_ m: [JSONValue]) -> String? {
            m.last { $0["role"]?.stringValue == "user" }?["content"]?.stringValue
        }
        switch job.request {
        case .messages(let m):
            return ResolvedRequest(messages: m, chatInput: lastUser(m), provider: job.provider, model: job.model, parameters: job.parameters)
        case .chatInput(let s):
            return ResolvedRequest(messages: [["role": "user", "content": .string(s)]], chatInput: s,
                                   provider: job.provider, model: job.model, parameters: job.parameters)
        case .passthrough(let body):
            let m = body["messages"]?.arrayValue ?? []
            return ResolvedRequest(messages: m, chatInput: lastUser(m), provider: job.provider,
                                   model: job.model ?? body["model"]?.stringValue, parameters: job.parameters)
        case .prompt(let id, let variables):
            let template = try PromptTemplate.load(id: id, from: config.promptsDir)
            let messages = try template.render(variables)
            let target = template.target(provider: job.provider, model: job.model, config: config)
            return ResolvedRequest(
                messages: messages, chatInput: lastUser(messages),
                provider: target.provider, model: target.model,
                parameters: template.parameters.merging(job.parameters, uniquingKeysWith: { _, override in override }))
        }
    }

    @inline(never)
    private func succeeded(
        _ job: Job, provider: String, model: String, request: ResolvedRequest,
        outcome: ProviderOutcome, attempts: Int, queueWait: Double?, rateLimitWait: Double
    ) -> UnifiedResponse {
        let messages = request.messages
        let acc = outcome.accumulator
        let output = acc.output
        let usage: Usage
        let source: JobMetrics.UsageSource
        if let u = acc.usage {
            usage = u
            source = .provider
        } else {
            let completion = acc.completionChoices.reduce(0) { total, c in
                total + TokenEstimator.tokens(in: c.message.content ?? "")
                    + (c.message.toolCalls ?? []).reduce(0) { $0 + TokenEstimator.tokens(in: $1.function.name + $1.function.arguments) }
            }
            usage = Usage(promptTokens: TokenEstimator.promptTokens(messages), completionTokens: completion)
            source = .estimated
        }
        let timing = outcome.timing
        let metrics = JobMetrics(
            inputTokens: usage.promptTokens, outputTokens: usage.completionTokens, totalTokens: usage.totalTokens,
            costUSD: prices.cost(provider: provider, model: model, inputTokens: usage.promptTokens, outputTokens: usage.completionTokens),
            latencyS: timing.latency, timeToFirstTokenS: timing.timeToFirstToken, interTokenLatencyS: timing.interTokenLatency,
            tokensPerSecond: timing.tokensPerSecond(outputTokens: usage.completionTokens), queueWaitS: queueWait,
            rateLimitWaitS: rateLimitWait, attempts: attempts, usageSource: source, streamComplete: outcome.streamComplete)
        let now = WallClock.now()
        return UnifiedResponse(
            id: acc.id ?? "chatcmpl-\(job.id)", created: acc.created ?? Int(saturating: now), model: acc.model ?? model,
            choices: acc.completionChoices, usage: usage, systemFingerprint: acc.systemFingerprint,
            sessionID: job.sessionID, chatInput: request.chatInput, chatOutput: output, context: messages, provider: provider,
            timestamp: now, parameters: request.parameters, metrics: metrics, jobID: job.id, status: .succeeded, error: nil,
            metadata: job.metadata, raw: outcome.raw)
    }

    @inline(never)
    func failedResponse(
        _ job: Job, error: UnifiedResponse.ErrorInfo, status: UnifiedResponse.Status, queueWait: Double?, attempts: Int,
        partial: ProviderOutcome? = nil, rateLimitWait: Double = 0
    ) -> UnifiedResponse {
        let now = WallClock.now()
        let request = try? resolve(job)
        let messages = request?.messages ?? []
        let chatInput = request?.chatInput ?? { if case .chatInput(let s) = job.request { return s } else { return nil } }()
        let resolved = try? config.resolve(provider: request?.provider ?? job.provider, model: request?.model ?? job.model)
        let model = resolved?.1 ?? job.model ?? ""
        let provider = resolved?.0.name ?? job.provider ?? ""
        // What was streamed before the failure or cancel still counts: its tokens were
        // produced and billed.
        var usage: Usage?
        var source = JobMetrics.UsageSource.estimated
        var metrics = JobMetrics(
            inputTokens: 0, outputTokens: 0, totalTokens: 0, costUSD: nil, latencyS: 0, timeToFirstTokenS: nil,
            interTokenLatencyS: nil, tokensPerSecond: nil, queueWaitS: queueWait, rateLimitWaitS: rateLimitWait, attempts: attempts,
            usageSource: .estimated, streamComplete: false)
        if let partial, partial.accumulator.contentChunks > 0 || partial.accumulator.usage != nil {
            if let u = partial.accumulator.usage {
                usage = u
                source = .provider
            } else {
                usage = Usage(promptTokens: TokenEstimator.promptTokens(messages),
                              completionTokens: TokenEstimator.tokens(in: partial.accumulator.output))
            }
            let t = partial.timing
            metrics = JobMetrics(
                inputTokens: usage!.promptTokens, outputTokens: usage!.completionTokens, totalTokens: usage!.totalTokens,
                costUSD: prices.cost(provider: provider, model: model, inputTokens: usage!.promptTokens, outputTokens: usage!.completionTokens),
                latencyS: t.latency, timeToFirstTokenS: t.timeToFirstToken, interTokenLatencyS: t.interTokenLatency,
                tokensPerSecond: t.tokensPerSecond(outputTokens: usage!.completionTokens), queueWaitS: queueWait,
                rateLimitWaitS: rateLimitWait, attempts: attempts, usageSource: source, streamComplete: false)
        }
        return UnifiedResponse(
            id: partial?.accumulator.id ?? "chatcmpl-\(job.id)", created: Int(saturating: now), model: model,
            choices: partial?.accumulator.completionChoices ?? [],
            usage: usage, systemFingerprint: nil, sessionID: job.sessionID, chatInput: chatInput,
            chatOutput: partial.map { $0.accumulator.output }, context: messages, provider: provider, timestamp: now,
            parameters: request?.parameters ?? job.parameters, metrics: metrics,
            jobID: job.id, status: status, error: error, metadata: job.metadata)
    }

    @inline(never)
    static func errorInfo(_ error: any Error) -> UnifiedResponse.ErrorInfo {
        let error = (error as? AttemptsError)?.underlying ?? error
        switch error {
        case let e as ProviderError:
            let type = e.kind == .cancelled ? "cancelled" : e.kind == .timeout ? "timeout" : e.kind.rawValue
            return .init(type: type, message: e.message, providerStatus: e.status, retryable: e.retryable)
        case is CancellationError:
            return .init(type: "cancelled", message: "the job was cancelled")
        case let e as SluiceError:
            let type = e.code == .cancelled ? "cancelled" : e.code == .timeout ? "timeout" : e.code.rawValue
            return .init(type: type, message: e.message, providerStatus: e.context["provider_status"].flatMap { Int($0) })
        default:
            return .init(type: "internal_error", message: "\(error)")
        }
    }
}

