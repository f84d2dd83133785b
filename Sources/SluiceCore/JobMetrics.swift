/// The `metrics` object of the unified response (docs/contract.md, Results; each field
/// defined in README, "Metrics, exactly").
public struct JobMetrics: Sendable, Hashable, Codable {
    public var inputTokens: Int
    public var outputTokens: Int
    public var totalTokens: Int
    public var costUSD: Double?
    public var latencyS: Double
    public var timeToFirstTokenS: Double?
    public var interTokenLatencyS: Double?
    public var tokensPerSecond: Double?
    public var queueWaitS: Double?
    /// Seconds the job was held by a provider's rate limit: waiting for admission by the
    /// shared limiter, and waiting out 429s.
    public var rateLimitWaitS: Double = 0
    public var attempts: Int
    public var usageSource: UsageSource
    public var streamComplete: Bool

    public enum UsageSource: String, Sendable, Codable { case provider, estimated }

    enum CodingKeys: String, CodingKey {
        case inputTokens = "input_tokens"
        case outputTokens = "output_tokens"
        case totalTokens = "total_tokens"
        case costUSD = "cost_usd"
        case latencyS = "latency_s"
        case timeToFirstTokenS = "time_to_first_token_s"
        case interTokenLatencyS = "inter_token_latency_s"
        case tokensPerSecond = "tokens_per_second"
        case queueWaitS = "queue_wait_s"
        case rateLimitWaitS = "rate_limit_wait_s"
        case attempts
        case usageSource = "usage_source"
        case streamComplete = "stream_complete"
    }

    public init(inputTokens: Int, outputTokens: Int, totalTokens: Int, costUSD: Double?, latencyS: Double,
                timeToFirstTokenS: Double?, interTokenLatencyS: Double?, tokensPerSecond: Double?,
                queueWaitS: Double?, rateLimitWaitS: Double = 0, attempts: Int, usageSource: UsageSource, streamComplete: Bool) {
        self.rateLimitWaitS = rateLimitWaitS
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.totalTokens = totalTokens
        self.costUSD = costUSD
        self.latencyS = latencyS
        self.timeToFirstTokenS = timeToFirstTokenS
        self.interTokenLatencyS = interTokenLatencyS
        self.tokensPerSecond = tokensPerSecond
        self.queueWaitS = queueWaitS
        self.attempts = attempts
        self.usageSource = usageSource
        self.streamComplete = streamComplete
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        inputTokens = try c.decode(Int.self, forKey: .inputTokens)
        outputTokens = try c.decode(Int.self, forKey: .outputTokens)
        totalTokens = try c.decode(Int.self, forKey: .totalTokens)
        costUSD = try c.decodeIfPresent(Double.self, forKey: .costUSD)
        latencyS = try c.decode(Double.self, forKey: .latencyS)
        timeToFirstTokenS = try c.decodeIfPresent(Double.self, forKey: .timeToFirstTokenS)
        interTokenLatencyS = try c.decodeIfPresent(Double.self, forKey: .interTokenLatencyS)
        tokensPerSecond = try c.decodeIfPresent(Double.self, forKey: .tokensPerSecond)
        queueWaitS = try c.decodeIfPresent(Double.self, forKey: .queueWaitS)
        // Results stored before the rate limiter have none.
        rateLimitWaitS = try c.decodeIfPresent(Double.self, forKey: .rateLimitWaitS) ?? 0
        attempts = try c.decode(Int.self, forKey: .attempts)
        usageSource = try c.decode(UsageSource.self, forKey: .usageSource)
        streamComplete = try c.decode(Bool.self, forKey: .streamComplete)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(inputTokens, forKey: .inputTokens)
        try c.encode(outputTokens, forKey: .outputTokens)
        try c.encode(totalTokens, forKey: .totalTokens)
        try c.encode(costUSD, forKey: .costUSD)
        try c.encode(latencyS, forKey: .latencyS)
        try c.encode(timeToFirstTokenS, forKey: .timeToFirstTokenS)
        try c.encode(interTokenLatencyS, forKey: .interTokenLatencyS)
        try c.encode(tokensPerSecond, forKey: .tokensPerSecond)
        try c.encode(queueWaitS, forKey: .queueWaitS)
        try c.encode(rateLimitWaitS, forKey: .rateLimitWaitS)
        try c.encode(attempts, forKey: .attempts)
        try c.encode(usageSource, forKey: .usageSource)
        try c.encode(streamComplete, forKey: .streamComplete)
    }
}

/// Timestamps of one provider attempt, in seconds on a monotonic clock, turned into the
/// timing metrics. Kept separate from I/O so the definitions are unit-tested:
///
/// - `latency_s`: request start to last byte.
/// - `time_to_first_token_s`: request start to the first chunk carrying content.
/// - `inter_token_latency_s`: mean gap between consecutive content chunks
///   (`(last - first) / (n - 1)`); null with fewer than two content chunks.
/// - `tokens_per_second`: `output_tokens / (latency_s - time_to_first_token_s)`; when
///   that span is zero (a non-streaming reply arrives all at once) it is
///   `output_tokens / latency_s`; null when no tokens were produced.
public struct TimingRecorder: Sendable {
    public private(set) var start: Double
    public private(set) var firstContent: Double?
    public private(set) var lastContent: Double?
    public private(set) var lastByte: Double
    public private(set) var contentChunks = 0

    public init(start: Double) {
        self.start = start
        self.lastByte = start
    }

    public mutating func byteReceived(at t: Double) { lastByte = max(lastByte, t) }

    public mutating func contentChunk(at t: Double) {
        if firstContent == nil { firstContent = t }
        lastContent = t
        contentChunks += 1
        byteReceived(at: t)
    }

    public var latency: Double { lastByte - start }
    public var timeToFirstToken: Double? { firstContent.map { $0 - start } }

    public var interTokenLatency: Double? {
        guard contentChunks >= 2, let first = firstContent, let last = lastContent else { return nil }
        return (last - first) / Double(contentChunks - 1)
    }

    public func tokensPerSecond(outputTokens: Int) -> Double? {
        guard outputTokens > 0 else { return nil }
        let generating = latency - (timeToFirstToken ?? latency)
        if generating > 1e-6 { return Double(outputTokens) / generating }
        return latency > 0 ? Double(outputTokens) / latency : nil
    }
}

/// Token estimates for providers that report no usage: about four characters of
/// English per token (OpenAI's rule of thumb), rounded up, plus a few tokens of framing
/// per message. Marked `usage_source: "estimated"` wherever used.
public enum TokenEstimator {
    public static func tokens(in text: String) -> Int {
        let n = text.utf8.count
        return n == 0 ? 0 : (n + 3) / 4
    }

    public static func promptTokens(_ messages: [JSONValue]) -> Int {
        var total = 3
        for m in messages {
            total += 4
            if let s = m["content"]?.stringValue {
                total += tokens(in: s)
            } else if let parts = m["content"]?.arrayValue {
                for p in parts { total += tokens(in: p["text"]?.stringValue ?? "") }
            }
        }
        return total
    }
}
