import Foundation
import HTTPTypes
import Hummingbird
import SluiceCore
import SluiceKafka
import SluiceRedis
import SluiceTelemetry

/// Submitting, finding and cancelling jobs: what every endpoint shares.
extension Gateway {
    /// What a submission did.
    enum Submission: Equatable {
        /// The job was produced to the requests topic.
        case produced
        /// The tenant had already submitted a job with this id: nothing was produced, and
        /// the answer is the existing job (the id works as an idempotency key).
        case existing
    }

    /// Submits a job in a span of its own (tracing on) that continues the client's trace
    /// (`trace`, from its `traceparent` header) or starts one. The job's record carries the
    /// span's context to the worker; with tracing off, the client's own, unchanged.
    func submit(_ job: inout Job, api: String, trace: TraceHeaders?) async throws -> Submission {
        let span = tracer.startSpan("submit job", continuing: trace, ofKind: .producer, attributes: ["api": "\(api)"])
        defer { span?.end() }
        let context = span.flatMap(tracer.headers(of:)) ?? trace
        let headers = context?.fields.map { KafkaHeader(name: $0.name, value: $0.value) } ?? []
        do {
            let submission = try await submit(&job, api: api, recordHeaders: headers)
            span?.updateAttributes { a in
                a["job_id"] = job.id
                a["tenant"] = job.tenant
                a["submission"] = submission == .produced ? "produced" : "existing"
            }
            return submission
        } catch {
            span?.fail((error as? APIError)?.message ?? "the submission failed")
            throw error
        }
    }

    /// Checks the job's fields (a 400 naming the field), checks that the tenant may run the job's models (403 otherwise), claims the job's
    /// id for its tenant (a tenant that has spent its daily limit gets a 429 and the id back), gives the job a new `submission_id` (which a
    /// cancel names), then produces it to its lane's requests topic (a job saying
    /// `"priority": "batch"` goes to the batch lane, any other to the interactive one) and
    /// waits for the broker's acknowledgement. An id another tenant holds is refused with
    /// 409, saying nothing of that tenant or its job.
    private func submit(_ job: inout Job, api: String, recordHeaders: [KafkaHeader]) async throws -> Submission {
        try check(job)
        job.submissionID = UUID().uuidString.lowercased()
        // Only this gateway seals keys: a client's own `api_key_sealed` is dropped.
        job.sealedAPIKey = nil
        let record: [UInt8]
        do {
            record = try JSON.encode(try job.record(keyring: keyring))
        } catch let error as SluiceError {
            throw APIError.badRequest("this gateway cannot take a per-job api_key: \(error.message)", param: "api_key", code: "api_key_not_accepted")
        }
        let claim: JobOwnership.Claim
        // A tenant with a daily spend limit: its spend today is read with the claim.
        let now = Date().timeIntervalSince1970
        let spendLimit = config.quotas.spendLimitUSD(for: job.tenant)
        let today = UsageDay(unixSeconds: now)
        var spend: SpendCheck?
        do {
            let found = try await store.claim(
                jobID: job.id, tenant: job.tenant, ttlSeconds: config.redis.eventTTLSeconds,
                fields: [("submitted_at", String(now)), ("api", api)] + (job.submissionID.map { [("submission_id", $0)] } ?? []),
                spendDay: spendLimit == nil ? nil : today)
            claim = found.claim
            if let spendLimit {
                spend = SpendCheck(limitUSD: spendLimit, spentMicroUSD: found.spentMicroUSD ?? 0, day: today)
            }
        } catch {
            logger.error("cannot record a job in Redis: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        switch claim {
        case .ownedByOther:
            throw APIError.idConflict(job.id)
        case .ownedBySameTenant:
            logger.debug("job resubmitted; answering the existing one", metadata: ["job_id": "\(job.id)", "tenant": "\(job.tenant)"])
            return .existing
        case .claimed:
            break
        }
        if let spend, spend.isExhausted {
            // Over the day's spend: nothing is produced, and the id is free again.
            store.unclaim(jobID: job.id)
            metrics.jobRefused(reason: "quota")
            throw APIError.quotaExceeded(spend, now: now)
        }
        try await admitToTenantCap(job)
        do {
            try await queue.produce(topic: config.requestsTopic(for: job.priority), key: job.id, value: record, headers: recordHeaders)
        } catch let error as KafkaError where error.isTooLarge {
            // The request itself is too large for the queue: retrying cannot help. The id
            // is freed again.
            store.release(jobID: job.id, tenant: job.tenant)
            logger.warning("a job too large for the requests topic: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError(
                .contentTooLarge, "invalid_request_error",
                "the job is \(record.count) bytes, more than the job queue takes (kafka.max_message_bytes is \(config.kafka.maxMessageBytes), and the topic's max.message.bytes may be lower); send a smaller request",
                code: "request_too_large")
        } catch {
            // Free the id again, so that a retry submits rather than finds a job that never was.
            store.release(jobID: job.id, tenant: job.tenant)
            logger.error("cannot submit a job to Kafka: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError.unavailable("the job queue is not reachable; try again later")
        }
        metrics.jobSubmitted(api: api)
        logger.debug("job submitted", metadata: ["job_id": "\(job.id)", "api": "\(api)", "tenant": "\(job.tenant)"])
        return .produced
    }

    /// The checks a job passes before anything is stored or subscribed: its fields (a 400
    /// naming the field) and the tenant's right to its models (403).
    func check(_ job: Job) throws {
        do {
            try job.validate(JobLimits(config))
        } catch let error as SluiceError {
            throw APIError(error)
        }
        try authorize(job)
    }

    /// Counts the job among its tenant's jobs in flight (`gateway.max_jobs_per_tenant`,
    /// across every gateway: the count lives in Redis, a sorted set of job ids scored by
    /// when they stop counting); over the cap the id is freed again and the answer is 429.
    /// The worker takes the job out of the set when it finishes; one that never does
    /// stops counting after `redis.event_ttl_s`.
    func admitToTenantCap(_ job: Job) async throws {
        let cap = config.gateway.maxJobsPerTenant
        guard cap > 0 else { return }
        let now = Int64(saturating: Date().timeIntervalSince1970)
        let ttl = Int64(config.redis.eventTTLSeconds)
        let admitted: Bool
        do {
            admitted = try await store.admit(
                jobID: job.id, tenant: job.tenant, cap: cap, now: now, until: now.adding(saturating: ttl), ttlSeconds: ttl)
        } catch {
            store.unclaim(jobID: job.id)
            logger.error("cannot count a tenant's jobs in Redis: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        guard admitted else {
            store.unclaim(jobID: job.id)
            metrics.jobRefused(reason: "tenant_cap")
            throw APIError.tooManyJobs(limit: cap)
        }
    }

    /// Produces `{"type": "cancel", "job_id", "tenant", "submission_id"}`, keyed by the
    /// job id, to the control topic, and notes the request in the job's meta. Workers
    /// apply it to that tenant's submission only, for the event TTL.
    func requestCancel(_ jobID: String, tenant: String, submissionID: String?, reason: String) async throws {
        let message = CancelRequest.message(jobID: jobID, tenant: tenant, submissionID: submissionID)
        do {
            try await queue.produce(topic: config.kafka.controlTopic, key: jobID, value: message, headers: [])
        } catch {
            logger.error("cannot produce a cancel message: \(error)", metadata: ["job_id": "\(jobID)"])
            throw APIError.unavailable("the control topic is not reachable; try again later")
        }
        store.noteCancelRequested(jobID: jobID, at: Date().timeIntervalSince1970)
        metrics.jobCancelled(reason: reason)
        logger.info("job cancel requested", metadata: ["job_id": "\(jobID)", "reason": "\(reason)"])
    }

    /// Cancels the job of a client that went away, if `gateway.cancel_on_disconnect`.
    func cancelAfterDisconnect(_ job: Job) async {
        guard config.gateway.cancelOnDisconnect else { return }
        try? await requestCancel(job.id, tenant: job.tenant, submissionID: job.submissionID, reason: "disconnect")
    }

    /// The job's meta if the job belongs to `tenant`; otherwise a 404, the same for a job
    /// of another tenant as for no job at all. A job with no recorded owner (its meta
    /// expired, or a job from Kafka no worker has started yet) is nobody's.
    @discardableResult
    func requireJob(_ id: String, tenant: String) async throws -> JobMeta {
        let meta: JobMeta?
        do {
            meta = try await store.meta(jobID: id)
        } catch {
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        guard let meta, meta.tenant == tenant else {
            throw APIError.notFound("no job \"\(id)\"", param: "id", code: "job_not_found")
        }
        return meta
    }

    /// A new job id.
    static func newJobID() -> String {
        UUID().uuidString.lowercased()
    }
}
