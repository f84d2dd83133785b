import Logging
import SluiceCore
import SluiceKafka
import SluiceTelemetry
import Tracing

/// A job's place in its trace: the context its record carried and, when tracing is on,
/// the job's span. What the job passes on (to its provider calls, its result and DLQ
/// records) is the span's context, or with tracing off the record's own, unchanged.
struct JobTrace: Sendable {
    let tracer: SluiceTracer
    /// The job's span; nil with tracing off.
    let span: (any Span)?
    /// The context the job passes on.
    let headers: TraceHeaders?

    /// No trace: for a job run outside a record (tests).
    static let untraced = JobTrace(passingOn: nil)

    /// No span: `incoming` passed on as it came (a message that is no job, for the DLQ).
    init(passingOn incoming: TraceHeaders?) {
        self.init(tracer: .off, span: nil, headers: incoming)
    }

    /// Reads the record's context; it is untrusted, and ignored if malformed.
    static func incoming(_ message: KafkaMessage) -> TraceHeaders? {
        guard !message.headers.isEmpty else { return nil }
        return TraceHeaders(fields: message.headers.lazy.compactMap { h in h.value.map { (name: h.name, value: $0) } })
    }

    /// Starts the job's span (with tracing on), continuing the record's trace.
    init(tracer: SluiceTracer, incoming: TraceHeaders?, job: Job) {
        var attributes: SpanAttributes = ["job_id": "\(job.id)", "tenant": "\(job.tenant)"]
        if let provider = job.provider { attributes["provider"] = "\(provider)" }
        if let model = job.model { attributes["model"] = "\(model)" }
        let span = tracer.startSpan("run job", continuing: incoming, ofKind: .consumer, attributes: attributes)
        self.init(tracer: tracer, span: span, headers: span.flatMap(tracer.headers(of:)) ?? incoming)
    }

    private init(tracer: SluiceTracer, span: (any Span)?, headers: TraceHeaders?) {
        self.tracer = tracer
        self.span = span
        self.headers = headers
    }

    /// The headers of a record the job produces.
    var kafkaHeaders: [KafkaHeader] {
        headers?.fields.map { KafkaHeader(name: $0.name, value: $0.value) } ?? []
    }

    /// A span for one provider attempt, a child of the job's.
    @inline(never)
    func startAttempt(provider: String, model: String, attempt: Int) -> (any Span)? {
        guard let span else { return nil }
        return tracer.startSpan("provider attempt", childOf: span, ofKind: .client, attributes: [
            "provider": "\(provider)", "model": "\(model)", "attempt": .int64(Int64(attempt)),
        ])
    }

    /// The context an attempt sends to its provider (`traceparent`, `tracestate`).
    func headers(of attempt: (any Span)?) -> TraceHeaders? {
        attempt.flatMap(tracer.headers(of:)) ?? headers
    }

    /// Ends the job's span with how its run ended (nil: with no result).
    @inline(never)
    func end(_ result: RunResult?) {
        end(result?.response)
    }

    /// Ends the job's span with how the job ended.
    @inline(never)
    func end(_ response: UnifiedResponse?) {
        guard let span else { return }
        if let response {
            span.updateAttributes { a in
                a["status"] = response.status.rawValue
                if !response.provider.isEmpty { a["provider"] = response.provider }
                if !response.model.isEmpty { a["model"] = response.model }
                a["attempts"] = response.metrics.attempts
            }
            if let error = response.error { span.fail("\(error.type): \(error.message)") }
        }
        span.end()
    }

    /// `logger` with the job's `trace_id`.
    @inline(never)
    func logging(_ logger: Logger) -> Logger {
        guard let headers else { return logger }
        var logger = logger
        logger[metadataKey: "trace_id"] = "\(headers.traceID)"
        return logger
    }
}
