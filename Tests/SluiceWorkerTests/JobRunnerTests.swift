import Logging
import SluiceCore
import SluiceHTTPClient
import SluiceProviders
import SluiceRedis
import Synchronization
import Testing
@testable import SluiceWorker

let quietLogger = Logger(label: "sluice.test") { _ in SwiftLogNoOpLogHandler() }

/// The job runner's attempt rules, against a scripted provider and a Redis that only
/// records: retries and their backoff, 429s, fallbacks, refusals, the job's timeout and
/// what may not be repeated once a reader has seen it. The delays between attempts are
/// recorded, not waited for.
@Suite(.timeLimit(.minutes(1)))
struct JobRunnerTests {
    /// A job's run against `script`, with the delays it asked to wait between attempts.
    struct Run {
        var response: UnifiedResponse
        var provider: ScriptedProvider
        var redis: RecordingRedis
        var delays: [Double]
    }

    func run(
        _ job: Job, script: [ScriptedProvider.Reply], maxAttempts: Int = 3, redis: RecordingRedis = RecordingRedis()
    ) async throws -> Run {
        var config = try SluiceConfig.parse(yaml: "")
        config.providers = [
            .init(name: "p1", kind: .openai, baseURL: "http://p1.invalid/v1"),
            .init(name: "p2", kind: .openai, baseURL: "http://p2.invalid/v1"),
        ]
        config.worker.maxAttempts = maxAttempts
        let provider = ScriptedProvider(script)
        let metrics = WorkerMetrics()
        let delays = Mutex<[Double]>([])
        var runner = JobRunner(
            config: config, providers: ProviderRunner(client: provider), redis: redis, prices: PriceTable(overrides: config.pricing),
            logger: quietLogger, environment: [:], metrics: metrics,
            limiter: RateLimiter(redis: redis, logger: quietLogger, metrics: metrics))
        runner.sleep = { delay in delays.withLock { $0.append(delay) } }
        let result = try #require(await runner.run(job, run: "r1", lastSeq: 0, producedAtMs: nil))
        return Run(response: result.response, provider: provider, redis: redis, delays: delays.withLock { $0 })
    }

    func job(timeout: Double? = nil, fallbacks: [ModelTarget] = []) -> Job {
        Job(id: "j1", provider: "p1", model: "m1", request: .chatInput("hi"), timeoutSeconds: timeout, fallbacks: fallbacks)
    }

    @Test func serverErrorsTimeoutsAndConnectionErrorsAreRetriedWithGrowingBackoff() async throws {
        let r = try await run(job(), script: [.status(503), .status(408), .connectionRefused, ScriptedProvider.hello],
                              maxAttempts: 4)
        #expect(r.response.status == .succeeded)
        #expect(r.response.chatOutput == "Hello")
        #expect(r.response.metrics.attempts == 4)
        #expect(r.provider.models == ["m1", "m1", "m1", "m1"])
        // 250 ms doubling, each between half and all of it.
        try #require(r.delays.count == 3)
        #expect((0.125...0.25).contains(r.delays[0]), "\(r.delays)")
        #expect((0.25...0.5).contains(r.delays[1]), "\(r.delays)")
        #expect((0.5...1).contains(r.delays[2]), "\(r.delays)")
        // Each attempt is announced; the request body is published once, not per attempt.
        let started = r.redis.events(.chatStarted).map { $0["data"]?["attempt"]?.intValue }
        #expect(started == [1, 2, 3, 4])
        let requests = r.redis.events(.chatCompletionRequest)
        #expect(requests.first?["data"]?["body"]?.objectValue != nil)
        #expect(requests.dropFirst().allSatisfy { $0["data"]?["body"] == .null })
    }

    @Test func retriesStopAtMaxAttemptsAndNeverWaitLessThanRetryAfter() async throws {
        let r = try await run(job(), script: [
            .status(500, headers: [("retry-after", "3")]), .status(502, headers: [("retry-after", "0")]), .status(503),
            ScriptedProvider.hello,
        ])
        #expect(r.response.status == .failed)
        #expect(r.response.metrics.attempts == 3)
        #expect(r.response.error?.providerStatus == 503)
        #expect(r.provider.models.count == 3, "max_attempts is 3: the fourth reply is never asked for")
        try #require(r.delays.count == 2)
        #expect(r.delays[0] >= 3, "Retry-After: 3 asks for at least 3 s, got \(r.delays[0])")
        #expect(r.delays[1] >= 0.25, "the backoff still applies when Retry-After asks for less")
    }

    @Test func a429IsAWaitForTheLimitNotAnAttempt() async throws {
        let r = try await run(job(), script: [.status(429, headers: [("retry-after", "0.05")]), ScriptedProvider.hello],
                              maxAttempts: 1)
        #expect(r.response.status == .succeeded)
        #expect(r.response.metrics.attempts == 1, "one attempt allowed, and the 429 did not spend it")
        #expect(r.provider.models.count == 2)
        #expect(r.delays.isEmpty, "a 429 waits in the rate limiter, not in the retry backoff")
        #expect(r.response.metrics.rateLimitWaitS >= 0.04, "the rate limiter held the request for Retry-After")
    }

    /// The worker's own delays between attempts: 250 ms doubling, each between half and all
    /// of that, never more than 8 s however many retries; a `Retry-After` raises one.
    @Test func theRetryBackoffDoublesFromAQuarterSecondAndIsCappedAtEight() {
        for retry in [0, 1, 2, 5, 6, 10, 1_000, Int.max] {
            var ceiling = 0.25
            for _ in 0..<min(retry, 10) { ceiling = min(ceiling * 2, 8) }
            for _ in 0..<50 {
                let delay = JobRunner<RecordingRedis, ScriptedProvider>.backoff(retry: retry, retryAfter: nil)
                #expect(delay >= ceiling / 2 - 1e-9 && delay <= ceiling + 1e-9, "retry \(retry): \(delay) s, ceiling \(ceiling) s")
            }
        }
        #expect(JobRunner<RecordingRedis, ScriptedProvider>.backoff(retry: 1_000, retryAfter: 30) == 30)
    }

    @Test func fallbacksAreTriedInTheirOrder() async throws {
        let r = try await run(
            job(fallbacks: [ModelTarget(provider: "p2", model: "m2"), ModelTarget(provider: "p1", model: "m3")]),
            script: [.status(500), .connectionRefused, ScriptedProvider.hello], maxAttempts: 1)
        #expect(r.response.status == .succeeded)
        #expect(r.provider.models == ["m1", "m2", "m3"])
        #expect(r.response.provider == "p1")
        #expect(r.response.metrics.attempts == 3)
        let targets = r.redis.events(.chatStarted).map { $0["data"]?["provider"]?.stringValue ?? "" }
        #expect(targets == ["p1", "p2", "p1"])
    }

    @Test func aRequestTheProviderRefusesFailsAtOnceWithoutFallbacks() async throws {
        let r = try await run(
            job(fallbacks: [ModelTarget(provider: "p2", model: "m2")]),
            script: [.status(400, body: #"{"error":{"message":"max_tokens is too large"}}"#), ScriptedProvider.hello])
        #expect(r.response.status == .failed)
        #expect(r.response.error?.providerStatus == 400)
        #expect(r.response.error?.message.contains("max_tokens is too large") == true)
        #expect(r.response.metrics.attempts == 1)
        #expect(r.provider.models == ["m1"])
        #expect(r.delays.isEmpty)
    }

    @Test func theJobsTimeoutBoundsItsRetries() async throws {
        // The provider asks for 5 s; the job has 2 s in all: no second attempt, timed out.
        let r = try await run(job(timeout: 2), script: [.status(503, headers: [("retry-after", "5")]), ScriptedProvider.hello])
        #expect(r.response.status == .timedOut)
        #expect(r.response.error?.type == "timeout")
        #expect(r.response.error?.providerStatus == 503)
        #expect(r.response.metrics.attempts == 1)
        #expect(r.provider.models.count == 1)
        #expect(r.delays.isEmpty)
    }

    @Test func nothingIsRetriedOnceContentWasPublished() async throws {
        let reset = HTTPClientError(.transfer, "connection reset by the script")
        let r = try await run(job(fallbacks: [ModelTarget(provider: "p2", model: "m2")]), script: [
            .stream([ScriptedProvider.chunk("Hel")], failure: reset), ScriptedProvider.hello,
        ])
        #expect(r.response.status == .failed)
        #expect(r.response.metrics.attempts == 1)
        #expect(r.provider.models == ["m1"], "a retry or a fallback would repeat what a reader has seen")
        #expect(r.response.chatOutput == "Hel", "what was relayed is kept in the result")
        #expect(r.redis.events(.chunk).count == 1)
        #expect(r.redis.events(.chatResponseFailure).count == 1)
    }

    @Test func aStreamThatFailsBeforeAnyContentIsRetried() async throws {
        let reset = HTTPClientError(.transfer, "connection reset by the script")
        let r = try await run(job(), script: [.stream([], failure: reset), ScriptedProvider.hello])
        #expect(r.response.status == .succeeded)
        #expect(r.response.metrics.attempts == 2)
        #expect(r.response.chatOutput == "Hello")
        #expect(r.delays.count == 1)
    }

    /// The first admission of a job whose bucket the run claim found clear asks Redis
    /// nothing, and, having charged no tokens, settles none; without that answer (or
    /// with a limit configured) the admission asks Redis once, and the usage is settled.
    @Test func aBucketTheClaimFoundClearIsAdmittedWithoutARoundTrip() async throws {
        func run(cleared: Bool, rpm: Int? = nil) async throws -> (sent: [RedisScript], asked: [RedisScript]) {
            var config = try SluiceConfig.parse(yaml: "")
            config.providers = [.init(name: "p1", kind: .openai, baseURL: "http://p1.invalid/v1", rpm: rpm)]
            let usage = #"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"# + "\n\n"
            let provider = ScriptedProvider([.stream([ScriptedProvider.chunk("Hello"), ScriptedProvider.chunk(finish: "stop"), usage,
                                                      "data: [DONE]\n\n"])])
            let redis = AdmittingRedis()
            let metrics = WorkerMetrics()
            let runner = JobRunner(
                config: config, providers: ProviderRunner(client: provider), redis: redis, prices: PriceTable(overrides: config.pricing),
                logger: quietLogger, environment: [:], metrics: metrics,
                limiter: RateLimiter(redis: redis, logger: quietLogger, metrics: metrics))
            let job = job()
            let bucket = runner.unlimitedFirstBucket(job)
            #expect((bucket == nil) == (rpm != nil), "only a provider without a configured limit is asked about with the claim")
            let result = try #require(await runner.run(job, run: "r1", lastSeq: 0, producedAtMs: nil, clearedBucket: cleared ? bucket : nil))
            #expect(result.response.status == .succeeded)
            return redis.scripts
        }
        let clear = try await run(cleared: true)
        #expect(clear.asked.isEmpty, "asked Redis \(clear.asked)")
        #expect(!clear.sent.contains(RateLimiter.settleScript))
        let unknown = try await run(cleared: false)
        #expect(unknown.asked == [RateLimiter.admitScript])
        #expect(unknown.sent.contains(RateLimiter.settleScript))
        let limited = try await run(cleared: true, rpm: 600)
        #expect(limited.asked == [RateLimiter.admitScript])
    }

    @Test func aRedisThatCannotKeepUpHoldsTheStreamAndLosesNoEvent() async throws {
        let redis = RecordingRedis(fullUntilWaits: 2)
        let stream: ScriptedProvider.Reply = .stream([
            ScriptedProvider.chunk("a"), ScriptedProvider.chunk("b"), ScriptedProvider.chunk("c"),
            ScriptedProvider.chunk(finish: "stop"), "data: [DONE]\n\n",
        ])
        let r = try await run(job(), script: [stream], redis: redis)
        #expect(r.response.status == .succeeded)
        #expect(r.response.chatOutput == "abc")
        // Held after each of the first two chunk events (Redis full), then carried on.
        #expect(redis.waitsForRoom == 2)
        #expect(redis.events(.chunk).count == 4, "no chunk event dropped while held")
        let seqs = redis.events.compactMap { $0["seq"]?.intValue }
        #expect(seqs == Array(1...seqs.count), "seq stays gap-free")
    }

    /// A stream that simply stops, without its finish reason or `[DONE]`, is never a
    /// success: after content it fails with what was relayed; before any, it is retried.
    @Test func aStreamThatEndsWithoutItsEndMarkerIsNeverASuccess() async throws {
        let cut = try await run(job(), script: [.stream([ScriptedProvider.chunk("Hel")]), ScriptedProvider.hello])
        #expect(cut.response.status == .failed)
        #expect(cut.response.metrics.streamComplete == false)
        #expect(cut.response.chatOutput == "Hel")
        #expect(cut.provider.models == ["m1"])

        let empty = try await run(job(), script: [.stream([]), ScriptedProvider.hello])
        #expect(empty.response.status == .succeeded, "nothing was relayed: the attempt is retried")
        #expect(empty.response.metrics.attempts == 2)
        #expect(empty.response.metrics.streamComplete)
        #expect(empty.response.chatOutput == "Hello")
    }
}
