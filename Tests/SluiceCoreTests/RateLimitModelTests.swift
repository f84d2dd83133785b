import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceProviders
import Testing

@Suite struct RateLimitHeaderTests {
    @Test func openAIHeadersAreRead() {
        let h = RateLimitHeaders(HTTPHeaders([
            ("x-ratelimit-limit-requests", "60"), ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"), ("x-ratelimit-limit-tokens", "150000"),
            ("x-ratelimit-remaining-tokens", "149984"), ("x-ratelimit-reset-tokens", "6m0s"), ("retry-after", "2"),
        ]))
        #expect(h.requestLimit == 60)
        #expect(h.requestsRemaining == 0)
        #expect(h.requestsReset == 1)
        #expect(h.tokenLimit == 150_000)
        #expect(h.tokensRemaining == 149_984)
        #expect(h.tokensReset == 360)
        #expect(h.retryAfter == 2)
    }

    @Test func anthropicHeadersAreRead() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let reset = ISO8601DateFormatter().string(from: now.addingTimeInterval(30))
        let h = RateLimitHeaders(HTTPHeaders([
            ("anthropic-ratelimit-requests-limit", "50"), ("anthropic-ratelimit-requests-remaining", "3"),
            ("anthropic-ratelimit-requests-reset", reset), ("anthropic-ratelimit-tokens-limit", "40000"),
        ]), now: now)
        #expect(h.requestLimit == 50)
        #expect(h.requestsRemaining == 3)
        #expect(h.requestsReset == 30)
        #expect(h.tokenLimit == 40_000)
        #expect(h.retryAfter == nil)
    }

    @Test func retryAfterMillisecondsWinOverSeconds() {
        let h = RateLimitHeaders(HTTPHeaders([("retry-after", "1"), ("retry-after-ms", "250")]))
        #expect(h.retryAfter == 0.25)
        #expect(RateLimitHeaders(HTTPHeaders()).isEmpty)
    }

    @Test func retryAfterAsAnHTTPDateIsTheTimeUntilThen() {
        let now = Date(timeIntervalSince1970: 1_795_000_000)  // Thu, 18 Nov 2026 09:46:40 GMT
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let inSeven = f.string(from: now.addingTimeInterval(7))
        #expect(RateLimitHeaders(HTTPHeaders([("retry-after", inSeven)]), now: now).retryAfter == 7)
        // A date in the past means now; one years ahead is held to a day; garbage is none.
        let past = f.string(from: now.addingTimeInterval(-30))
        #expect(RateLimitHeaders(HTTPHeaders([("retry-after", past)]), now: now).retryAfter == 0)
        let far = f.string(from: now.addingTimeInterval(3 * 365 * 86_400))
        #expect(RateLimitHeaders(HTTPHeaders([("retry-after", far)]), now: now).retryAfter == 86_400)
        #expect(RateLimitHeaders(HTTPHeaders([("retry-after", "Thu, 99 Foo 2026")]), now: now).retryAfter == nil)
        #expect(RateLimitHeaders(HTTPHeaders([("retry-after", "1e400")]), now: now).retryAfter == nil)
    }

    @Test(arguments: [("20ms", 0.02), ("1s", 1.0), ("6m0s", 360.0), ("1h2m3.5s", 3723.5), ("0.5", 0.5)])
    func openAIDurations(text: String, seconds: Double) {
        #expect(abs((RateLimitHeaders.duration(text) ?? -1) - seconds) < 1e-9)
    }

    @Test(arguments: ["", "s", "5x", "-1", "3m2"])
    func badDurationsAreNil(text: String) {
        #expect(RateLimitHeaders.duration(text) == nil)
    }
}

@Suite struct LaneAndDeadlineFieldTests {
    func parse(_ json: String) throws -> Job { try Job.parse(Array(json.utf8)) }

    @Test func priorityDeadlineAndQueueTimeAreRead() throws {
        let job = try parse("""
            {"id": "j", "model": "m", "chat_input": "x", "priority": "batch",
             "deadline": "2026-01-31T12:00:00Z", "max_queue_s": 90}
            """)
        #expect(job.priority == .batch)
        #expect(job.deadline == Job.parseTimestamp("2026-01-31T12:00:00Z"))
        #expect(job.maxQueueSeconds == 90)
        // Encoded for the topic and read back, the fields survive.
        let again = try Job.parse(job.encoded())
        #expect(again.priority == .batch && again.deadline == job.deadline && again.maxQueueSeconds == 90)
    }

    @Test func deadlineMayBeEpochSeconds() throws {
        #expect(try parse(#"{"chat_input": "x", "deadline": 1800000000}"#).deadline == 1_800_000_000)
    }

    @Test func startByIsTheEarlierOfDeadlineAndQueueTime() throws {
        var job = try parse(#"{"chat_input": "x", "deadline": 1000, "max_queue_s": 50}"#)
        #expect(job.startBy(producedAt: 900) == 950)
        #expect(job.startBy(producedAt: 990) == 1000)
        #expect(job.startBy(producedAt: nil) == 1000)
        job.deadline = nil
        #expect(job.startBy(producedAt: 10) == 60)
        job.maxQueueSeconds = nil
        #expect(job.startBy(producedAt: 10) == nil)
    }

    @Test(arguments: [
        (#"{"chat_input": "x", "priority": "urgent"}"#, "\"priority\""),
        (#"{"chat_input": "x", "deadline": "tomorrow"}"#, "\"deadline\""),
        (#"{"chat_input": "x", "deadline": true}"#, "\"deadline\""),
        (#"{"chat_input": "x", "max_queue_s": 0}"#, "\"max_queue_s\""),
        (#"{"chat_input": "x", "max_queue_s": "5"}"#, "\"max_queue_s\""),
    ])
    func badFieldsAreNamed(json: String, field: String) {
        #expect {
            try parse(json)
        } throws: { error in
            (error as? SluiceError)?.code == .invalidJob && (error as? SluiceError)?.message.contains(field) == true
        }
    }

    @Test func providerLimitsAreConfigured() throws {
        let c = try SluiceConfig.parse(yaml: """
            providers:
              - {name: openai, kind: openai, base_url: "https://api.openai.com/v1", rpm: 60, tpm: 150000}
            worker: {max_rate_limit_wait_s: 120}
            models: {}
            """)
        #expect(c.providers[0].rpm == 60)
        #expect(c.providers[0].tpm == 150_000)
        #expect(c.worker.maxRateLimitWaitSeconds == 120)
        #expect(throws: SluiceError.self) {
            try SluiceConfig.parse(yaml: "providers: [{name: p, kind: mock, base_url: \"http://x\", rpm: 0}]\nmodels: {}")
        }
    }

    @Test func resultsWithoutRateLimitWaitStillDecode() throws {
        let old = #"{"input_tokens": 1, "output_tokens": 2, "total_tokens": 3, "cost_usd": null, "latency_s": 0.1, "time_to_first_token_s": null, "inter_token_latency_s": null, "tokens_per_second": null, "queue_wait_s": null, "attempts": 1, "usage_source": "provider", "stream_complete": true}"#
        let m = try JSON.decode(JobMetrics.self, from: Array(old.utf8))
        #expect(m.rateLimitWaitS == 0)
        let encoded = String(decoding: try JSON.encode(m), as: UTF8.self)
        #expect(encoded.contains("\"rate_limit_wait_s\""))
    }
}
