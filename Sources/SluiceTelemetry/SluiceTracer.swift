import SluiceCore
import Tracing

/// The tracer of a Sluice process, or none.
///
/// Tracing is off unless `tracing.otlp_endpoint` is set; then every method here is a
/// nil check and returns nil, and callers pass a job's ``TraceHeaders`` on unchanged.
/// Spans are made per job and per provider attempt, never per chunk.
public struct SluiceTracer: Sendable {
    public let tracer: (any Tracer)?

    public init(_ tracer: (any Tracer)?) {
        self.tracer = tracer
    }

    public static let off = SluiceTracer(nil)

    public var isOn: Bool { tracer != nil }

    /// Starts a span continuing the trace of `parent`, or a new trace when there is none.
    public func startSpan(
        _ name: String, continuing parent: TraceHeaders?, ofKind kind: SpanKind, attributes: SpanAttributes = [:]
    ) -> (any Span)? {
        guard let tracer else { return nil }
        var context = ServiceContext.topLevel
        if let parent { tracer.extract(parent, into: &context, using: TraceHeadersExtractor()) }
        return start(tracer, name, context: context, kind: kind, attributes: attributes)
    }

    /// Starts a child of `parent`.
    public func startSpan(
        _ name: String, childOf parent: any Span, ofKind kind: SpanKind, attributes: SpanAttributes = [:]
    ) -> (any Span)? {
        guard let tracer else { return nil }
        return start(tracer, name, context: parent.context, kind: kind, attributes: attributes)
    }

    /// The context of `span`, as headers to send on.
    public func headers(of span: any Span) -> TraceHeaders? {
        guard let tracer else { return nil }
        var carrier = TraceHeaderFields()
        tracer.inject(span.context, into: &carrier, using: TraceHeadersInjector())
        return carrier.headers
    }

    private func start(
        _ tracer: any Tracer, _ name: String, context: ServiceContext, kind: SpanKind, attributes: SpanAttributes
    ) -> any Span {
        let span = tracer.startSpan(name, context: context, ofKind: kind)
        if !attributes.isEmpty {
            span.updateAttributes { $0.merge(attributes) }
        }
        return span
    }
}

extension Span {
    /// Marks the span failed with `message` (no secret: error messages never hold one).
    public func fail(_ message: String) {
        setStatus(SpanStatus(code: .error, message: message))
    }
}

/// Reads a validated context for the tracer's propagator.
struct TraceHeadersExtractor: Extractor {
    func extract(key: String, from carrier: TraceHeaders) -> String? {
        switch key.lowercased() {
        case TraceHeaders.traceparentName: carrier.traceparent
        case TraceHeaders.tracestateName: carrier.tracestate
        default: nil
        }
    }
}

/// What the tracer's propagator writes, read back through ``TraceHeaders``' checks.
struct TraceHeaderFields {
    var fields: [(name: String, value: [UInt8])] = []
    var headers: TraceHeaders? { TraceHeaders(fields: fields) }
}

struct TraceHeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout TraceHeaderFields) {
        carrier.fields.append((name: key, value: Array(value.utf8)))
    }
}
