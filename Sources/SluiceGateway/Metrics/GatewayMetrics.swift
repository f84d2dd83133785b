import Metrics
import Prometheus

/// The gateway's metrics, through swift-metrics into a Prometheus registry of the
/// gateway's own (not the process-wide `MetricsSystem`, so that several gateways, as in
/// the tests, keep separate counts). `GET /metrics` renders the registry.
///
/// | metric | labels | what |
/// |---|---|---|
/// | `sluice_gateway_requests_total` | `route`, `method`, `status` | requests answered (route as registered, `unmatched` for none) |
/// | `sluice_gateway_sse_readers` | | event streams open now |
/// | `sluice_gateway_sse_readers_refused_total` | | event streams refused: the tenant held `gateway.max_readers_per_tenant` |
/// | `sluice_gateway_sse_readers_cut_total` | | readers cut for falling `gateway.reader_buffer_events` behind their job |
/// | `sluice_gateway_jobs_submitted_total` | `api` | jobs produced to the requests topic, by endpoint family |
/// | `sluice_gateway_jobs_cancelled_total` | `reason` | cancel messages produced (`delete`, `disconnect`) |
final class GatewayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let sseReaders: Meter

    init() {
        factory = PrometheusMetricsFactory(registry: registry)
        sseReaders = Meter(label: "sluice_gateway_sse_readers", factory: factory)
        sseReaders.set(0)
    }

    func request(route: String, method: String, status: Int) {
        Counter(
            label: "sluice_gateway_requests_total",
            dimensions: [("route", route), ("method", method), ("status", String(status))],
            factory: factory
        ).increment()
    }

    func jobSubmitted(api: String) {
        Counter(label: "sluice_gateway_jobs_submitted_total", dimensions: [("api", api)], factory: factory).increment()
    }

    func jobCancelled(reason: String) {
        Counter(label: "sluice_gateway_jobs_cancelled_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    func sseReaderRefused() {
        Counter(label: "sluice_gateway_sse_readers_refused_total", factory: factory).increment()
    }

    func sseReaderCut() {
        Counter(label: "sluice_gateway_sse_readers_cut_total", factory: factory).increment()
    }

    func sseReaderConnected() { sseReaders.increment() }
    func sseReaderDisconnected() { sseReaders.decrement() }

    /// The Prometheus text exposition format.
    func render() -> [UInt8] {
        registry.emitToBuffer()
    }
}
