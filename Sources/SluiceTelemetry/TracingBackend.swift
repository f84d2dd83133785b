import Logging
import OTel
import ServiceLifecycle
import SluiceCore
import Tracing

/// Builds the process's tracer from `tracing.*`: swift-otel's tracer with a batching
/// OTLP/HTTP exporter. Its service exports in the background and flushes what is left
/// when the service group shuts down; run it in the process's `ServiceGroup`, after the
/// services that make spans (a group stops its services in reverse order).
public enum TracingBackend {
    /// `(.off, nil)` when tracing is off.
    ///
    /// - Parameter serviceName: the `service.name` when `tracing.service_name` is not set.
    /// - Parameter exportDelay: how long finished spans wait to be sent in one batch.
    public static func make(
        _ config: SluiceConfig.Tracing, serviceName: String, logger: Logger, exportDelay: Duration = .seconds(2)
    ) throws -> (tracer: SluiceTracer, service: (any Service)?) {
        guard let url = config.tracesURL else { return (.off, nil) }
        var otel = OTel.Configuration.default
        otel.serviceName = config.serviceName ?? serviceName
        otel.diagnosticLogger = .custom(logger)
        otel.logs.enabled = false
        otel.metrics.enabled = false
        otel.propagators = [.traceContext]
        otel.traces.enabled = true
        otel.traces.exporter = .otlp
        otel.traces.otlpExporter.endpoint = url
        otel.traces.otlpExporter.protocol = switch config.otlpProtocol {
        case .httpProtobuf: .httpProtobuf
        case .httpJSON: .httpJSON
        }
        otel.traces.sampler = .parentBasedTraceIDRatio(ratio: config.sampleRatio) ?? .parentBasedAlwaysOn
        otel.traces.batchSpanProcessor.scheduleDelay = exportDelay
        let backend = try OTel.makeTracingBackend(configuration: otel)
        logger.info("tracing on", metadata: ["otlp_endpoint": "\(url)", "service_name": "\(otel.serviceName)"])
        return (SluiceTracer(backend.factory), backend.service)
    }
}
