/// Writes a JSON object field by field into a byte buffer: for the documents the worker
/// writes once per job (the unified response), where JSONEncoder's Codable machinery cost
/// more than the rest of the job's bookkeeping. Numbers and strings come out as
/// JSONEncoder writes them (an integral Double without its `.0`).
public struct JSONObjectWriter {
    public private(set) var bytes: [UInt8]
    private var first = true

    public init(capacity: Int = 1024) {
        bytes = []
        bytes.reserveCapacity(capacity)
        bytes.append(UInt8(ascii: "{"))
    }

    /// Closes the object and returns its bytes.
    public consuming func finish() -> [UInt8] {
        bytes.append(UInt8(ascii: "}"))
        return bytes
    }

    @inline(__always) mutating func key(_ name: StaticString) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(UInt8(ascii: "\""))
        bytes.append(UInt8(ascii: ":"))
    }

    public mutating func field(_ name: StaticString, _ value: String?) {
        key(name)
        if let value { JSON.appendString(value, to: &bytes) } else { bytes.append(contentsOf: "null".utf8) }
    }

    public mutating func field(_ name: StaticString, _ value: Int?) {
        key(name)
        bytes.append(contentsOf: (value.map { String($0) } ?? "null").utf8)
    }

    public mutating func field(_ name: StaticString, _ value: Bool) {
        key(name)
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
    }

    public mutating func field(_ name: StaticString, _ value: Double?) throws {
        key(name)
        guard let value else {
            bytes.append(contentsOf: "null".utf8)
            return
        }
        try JSONValue.number(value).write(to: &bytes)
    }

    public mutating func field(_ name: StaticString, _ value: JSONValue?) throws {
        key(name)
        try (value ?? .null).write(to: &bytes)
    }

    /// A value that is already JSON.
    public mutating func field(_ name: StaticString, raw: [UInt8]) {
        key(name)
        bytes.append(contentsOf: raw)
    }
}

extension Usage {
    func json() throws -> [UInt8] {
        var w = JSONObjectWriter(capacity: 128)
        w.field("prompt_tokens", promptTokens)
        w.field("completion_tokens", completionTokens)
        w.field("total_tokens", totalTokens)
        if let promptTokensDetails { try w.field("prompt_tokens_details", promptTokensDetails) }
        if let completionTokensDetails { try w.field("completion_tokens_details", completionTokensDetails) }
        return w.finish()
    }
}

extension JobMetrics {
    func json() throws -> [UInt8] {
        var w = JSONObjectWriter(capacity: 400)
        w.field("input_tokens", inputTokens)
        w.field("output_tokens", outputTokens)
        w.field("total_tokens", totalTokens)
        try w.field("cost_usd", costUSD)
        try w.field("latency_s", latencyS)
        try w.field("time_to_first_token_s", timeToFirstTokenS)
        try w.field("inter_token_latency_s", interTokenLatencyS)
        try w.field("tokens_per_second", tokensPerSecond)
        try w.field("queue_wait_s", queueWaitS)
        try w.field("rate_limit_wait_s", rateLimitWaitS)
        w.field("attempts", attempts)
        w.field("usage_source", usageSource.rawValue)
        w.field("stream_complete", streamComplete)
        return w.finish()
    }
}

extension CompletionChoice {
    func json() throws -> [UInt8] {
        var message = JSONObjectWriter(capacity: 256)
        message.field("content", self.message.content)
        message.field("role", self.message.role)
        message.field("function_call", raw: Array("null".utf8))
        if let calls = self.message.toolCalls {
            var list: [UInt8] = [UInt8(ascii: "[")]
            for (k, call) in calls.enumerated() {
                if k > 0 { list.append(UInt8(ascii: ",")) }
                var function = JSONObjectWriter(capacity: 128)
                function.field("name", call.function.name)
                function.field("arguments", call.function.arguments)
                var c = JSONObjectWriter(capacity: 192)
                c.field("id", call.id)
                c.field("type", call.type)
                c.field("function", raw: function.finish())
                list.append(contentsOf: c.finish())
            }
            list.append(UInt8(ascii: "]"))
            message.field("tool_calls", raw: list)
        } else {
            message.field("tool_calls", raw: Array("null".utf8))
        }
        if let refusal = self.message.refusal { message.field("refusal", refusal) }

        var w = JSONObjectWriter(capacity: 320)
        w.field("finish_reason", finishReason)
        w.field("index", index)
        try w.field("logprobs", logprobs ?? .null)
        w.field("message", raw: message.finish())
        return w.finish()
    }
}

extension UnifiedResponse {
    /// The response as JSON, written directly (`JSON.encode` uses this).
    public func json() throws -> [UInt8] {
        var w = JSONObjectWriter(capacity: 1536)
        w.field("id", id)
        var list: [UInt8] = [UInt8(ascii: "[")]
        for (k, choice) in choices.enumerated() {
            if k > 0 { list.append(UInt8(ascii: ",")) }
            list.append(contentsOf: try choice.json())
        }
        list.append(UInt8(ascii: "]"))
        w.field("choices", raw: list)
        w.field("created", created)
        w.field("model", model)
        w.field("object", object)
        w.field("system_fingerprint", systemFingerprint)
        w.field("usage", raw: try usage?.json() ?? Array("null".utf8))
        w.field("session_id", sessionID)
        w.field("chat_input", chatInput)
        w.field("chat_output", chatOutput)
        try w.field("context", JSONValue.array(context))
        w.field("provider", provider)
        try w.field("timestamp", timestamp)
        try w.field("parameters", JSONValue.object(parameters))
        w.field("metrics", raw: try metrics.json())
        w.field("job_id", jobID)
        w.field("status", status.rawValue)
        if let error {
            var e = JSONObjectWriter(capacity: 256)
            e.field("type", error.type)
            e.field("message", error.message)
            e.field("provider_status", error.providerStatus)
            e.field("retryable", error.retryable)
            w.field("error", raw: e.finish())
        } else {
            w.field("error", raw: Array("null".utf8))
        }
        try w.field("metadata", metadata)
        if let raw { try w.field("raw", raw) }
        if let inputOmitted { w.field("input_omitted", inputOmitted) }
        return w.finish()
    }
}
