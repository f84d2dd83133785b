import CoreMetrics
import Metrics
import Prometheus
import SluiceCore
import Synchronization

/// The worker's metrics, through swift-metrics into a Prometheus registry of the
/// worker's own. `sluice worker --metrics-listen HOST:PORT` serves it at `/metrics`.
///
/// | metric | labels | what |
/// |---|---|---|
/// | `sluice_worker_jobs_total` | `status`, `provider` | jobs finished, by final status |
/// | `sluice_worker_jobs_in_flight` | | jobs running now |
/// | `sluice_worker_retries_total` | `provider` | provider attempts retried after a retryable failure |
/// | `sluice_worker_dlq_total` | | messages sent to the DLQ |
/// | `sluice_worker_provider_latency_seconds` | `provider` | request start to last byte of successful attempts (histogram) |
/// | `sluice_worker_time_to_first_token_seconds` | `provider` | request start to first content chunk (histogram) |
/// | `sluice_worker_tokens_total` | `provider`, `kind` (`input`/`output`) | tokens, as reported or estimated |
/// | `sluice_worker_cost_usd_total` | `provider` | cost of priced models |
/// | `sluice_worker_consumer_lag` | `partition` | messages behind the partition's end, per assigned partition of the requests topic |
/// | `sluice_worker_batch_consumer_lag` | `partition` | the same for the batch requests topic |
/// | `sluice_worker_assigned_partitions` | `lane` (`interactive`/`batch`) | partitions of the lane's requests topic this worker holds now |
/// | `sluice_worker_stale_messages_total` | | messages fetched under an assignment that ended before they started (left to the partition's owner) |
/// | `sluice_worker_results_replayed_total` | | redelivered jobs answered from their stored result, without calling the provider |
/// | `sluice_worker_redis_dropped_commands_total` | | events dropped because Redis was away and the buffer was full |
/// | `sluice_worker_rate_limit_admissions_total` | `provider` | requests the shared rate limiter let through |
/// | `sluice_worker_rate_limit_waits_total` | `provider` | admissions that had to wait (for the limit, a hold, or interactive work) |
/// | `sluice_worker_rate_limit_wait_seconds_total` | `provider` | time jobs spent waiting for admission |
/// | `sluice_worker_provider_rate_limited_total` | `provider` | provider answers of 429 (waited out, not counted as attempts) |
/// | `sluice_worker_tenant_jobs_total` | `tenant`, `status` | jobs finished, per tenant |
/// | `sluice_worker_tenant_tokens_total` | `tenant`, `kind` (`input`/`output`) | tokens, per tenant |
/// | `sluice_worker_tenant_cost_usd_total` | `tenant` | cost of priced models, per tenant |
/// | `sluice_worker_tenant_quota_refusals_total` | `tenant` | jobs failed `quota_exceeded` (the tenant's daily spend limit reached) |
///
/// `tenant` is one of the tenants the configuration names (`gateway.api_keys`,
/// `quotas.tenants`, `default`), or `_other` for any other a Kafka job claims: the label
/// set stays bounded whatever producers write.
public final class WorkerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private let inFlight: Meter
    private let dlq: CoreMetrics.Counter
    private let stale: CoreMetrics.Counter
    private let replayed: CoreMetrics.Counter
    private let redisDropped: CoreMetrics.Counter
    private let redisDroppedSeen = Mutex(0)
    private let assignedPartitions = Mutex<[JobPriority: Int]>([:])
    /// The tenants labelled by name; every other one is `otherTenant`.
    private let namedTenants = Mutex<Set<String>>(["default"])
    static let otherTenant = "_other"
    /// The labelled metrics made so far: a job's end touches up to ten of them, and
    /// making one through the factory validates its name and labels and looks it up in
    /// the registry each time. The label sets are bounded (see `tenant`).
    private let counters = Mutex<[MetricKey: CoreMetrics.Counter]>([:])
    private let floatingPointCounters = Mutex<[MetricKey: CoreMetrics.FloatingPointCounter]>([:])
    private let timers = Mutex<[MetricKey: CoreMetrics.Timer]>([:])

    public init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        let latencyBuckets: [Double] = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]
        factory.defaultDurationHistogramBuckets = latencyBuckets.map { .seconds(saturating: $0) }
        self.factory = factory
        inFlight = Meter(label: "sluice_worker_jobs_in_flight", factory: factory)
        inFlight.set(0)
        dlq = CoreMetrics.Counter(label: "sluice_worker_dlq_total", factory: factory)
        stale = CoreMetrics.Counter(label: "sluice_worker_stale_messages_total", factory: factory)
        replayed = CoreMetrics.Counter(label: "sluice_worker_results_replayed_total", factory: factory)
        redisDropped = CoreMetrics.Counter(label: "sluice_worker_redis_dropped_commands_total", factory: factory)
    }

    private struct MetricKey: Hashable {
        var label: String
        var dimensions: [String]

        init(_ label: String, _ dimensions: [(String, String)]) {
            self.label = label
            // One array, not one per dimension as well: this runs several times per job.
            var flat: [String] = []
            flat.reserveCapacity(2 * dimensions.count)
            for (name, value) in dimensions {
                flat.append(name)
                flat.append(value)
            }
            self.dimensions = flat
        }
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> CoreMetrics.Counter {
        let key = MetricKey(label, dimensions)
        return counters.withLock { cache in
            if let made = cache[key] { return made }
            let made = CoreMetrics.Counter(label: label, dimensions: dimensions, factory: factory)
            cache[key] = made
            return made
        }
    }

    private func floatingPointCounter(_ label: String, _ dimensions: [(String, String)]) -> CoreMetrics.FloatingPointCounter {
        let key = MetricKey(label, dimensions)
        return floatingPointCounters.withLock { cache in
            if let made = cache[key] { return made }
            let made = CoreMetrics.FloatingPointCounter(label: label, dimensions: dimensions, factory: factory)
            cache[key] = made
            return made
        }
    }

    private func timer(_ label: String, _ dimensions: [(String, String)]) -> CoreMetrics.Timer {
        let key = MetricKey(label, dimensions)
        return timers.withLock { cache in
            if let made = cache[key] { return made }
            let made = CoreMetrics.Timer(label: label, dimensions: dimensions, factory: factory)
            cache[key] = made
            return made
        }
    }

    func staleMessageSkipped() { stale.increment() }
    func resultReplayed() { replayed.increment() }

    /// Brings the dropped-commands counter up to the connection's running total.
    func redisDropped(total: Int) {
        let delta = redisDroppedSeen.withLock { seen -> Int in
            defer { seen = max(seen, total) }
            return total - seen
        }
        if delta > 0 { redisDropped.increment(by: delta) }
    }

    func jobStarted() { inFlight.increment() }
    func jobEnded() { inFlight.decrement() }
    func sentToDLQ() { dlq.increment() }
    /// A record the broker refused for good, replaced by a cut-down one.
    func recordRefused(topic: String) {
        counter("sluice_worker_records_cut_down_total", [("topic", topic)]).increment()
    }

    func rateLimitAdmitted(provider: String, waited: Double) {
        counter("sluice_worker_rate_limit_admissions_total", [("provider", provider)])
            .increment()
        guard waited > 0.001 else { return }
        counter("sluice_worker_rate_limit_waits_total", [("provider", provider)])
            .increment()
        floatingPointCounter("sluice_worker_rate_limit_wait_seconds_total", [("provider", provider)]).increment(by: waited)
    }

    func rateLimitedByProvider(provider: String) {
        counter("sluice_worker_provider_rate_limited_total", [("provider", provider)])
            .increment()
    }

    func retried(provider: String) {
        counter("sluice_worker_retries_total", [("provider", provider)]).increment()
    }

    /// Names the tenants whose series carry their own name (the configuration's).
    func labelTenants(_ names: Set<String>) {
        namedTenants.withLock { $0 = names }
    }

    /// The `tenant` label of a tenant: its name if configured, else `_other`.
    func tenantLabel(_ tenant: String) -> String {
        namedTenants.withLock { $0.contains(tenant) } ? tenant : WorkerMetrics.otherTenant
    }

    func quotaRefused(tenant: String) {
        counter("sluice_worker_tenant_quota_refusals_total", [("tenant", tenantLabel(tenant))])
            .increment()
    }

    func finished(_ r: UnifiedResponse, tenant: String) {
        let provider = r.provider.isEmpty ? "none" : r.provider
        let tenant = tenantLabel(tenant)
        counter("sluice_worker_tenant_jobs_total", [("tenant", tenant), ("status", r.status.rawValue)]).increment()
        counter("sluice_worker_jobs_total", [("status", r.status.rawValue), ("provider", provider)]).increment()
        let m = r.metrics
        if m.inputTokens > 0 {
            counter("sluice_worker_tokens_total", [("provider", provider), ("kind", "input")])
                .increment(by: m.inputTokens)
            counter("sluice_worker_tenant_tokens_total", [("tenant", tenant), ("kind", "input")])
                .increment(by: m.inputTokens)
        }
        if m.outputTokens > 0 {
            counter("sluice_worker_tokens_total", [("provider", provider), ("kind", "output")])
                .increment(by: m.outputTokens)
            counter("sluice_worker_tenant_tokens_total", [("tenant", tenant), ("kind", "output")])
                .increment(by: m.outputTokens)
        }
        if let cost = m.costUSD, cost > 0, cost.isFinite {
            floatingPointCounter("sluice_worker_cost_usd_total", [("provider", provider)])
                .increment(by: cost)
            floatingPointCounter("sluice_worker_tenant_cost_usd_total", [("tenant", tenant)])
                .increment(by: cost)
        }
        guard r.status == .succeeded else { return }
        timer("sluice_worker_provider_latency_seconds", [("provider", provider)])
            .recordNanoseconds(Int64(saturating: m.latencyS * 1e9))
        if let ttft = m.timeToFirstTokenS {
            timer("sluice_worker_time_to_first_token_seconds", [("provider", provider)])
                .recordNanoseconds(Int64(saturating: ttft * 1e9))
        }
    }

    func lag(partition: Int32, behind: Int64, lane: JobPriority = .interactive) {
        CoreMetrics.Gauge(label: lane == .batch ? "sluice_worker_batch_consumer_lag" : "sluice_worker_consumer_lag",
                          dimensions: [("partition", String(partition))], factory: factory)
            .record(behind)
    }

    /// The partitions of a lane's requests topic held after a rebalance.
    func assigned(partitions: Int, lane: JobPriority) {
        assignedPartitions.withLock { $0[lane] = partitions }
        CoreMetrics.Gauge(label: "sluice_worker_assigned_partitions", dimensions: [("lane", lane.rawValue)], factory: factory)
            .record(partitions)
    }

    /// The partitions of a lane's requests topic this worker holds now.
    public func assignedPartitions(_ lane: JobPriority) -> Int { assignedPartitions.withLock { $0[lane] ?? 0 } }

    /// The Prometheus text exposition format.
    public func render() -> [UInt8] { registry.emitToBuffer() }
}
