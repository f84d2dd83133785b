import Foundation
import HTTPTypes
import Hummingbird
import SluiceCore
import SluiceKafka
import SluiceRedis

/// Submitting, finding and cancelling jobs: what every endpoint shares.
extension Gateway {
    /// Checks the job's fields (a 400 naming the field), records its tenant, then
    /// produces it to its lane's requests topic (a job saying `"priority": "batch"` goes
    /// to the batch lane, any other to the interactive one) and waits for the broker's
    /// acknowledgement.
    func submit(_ job: Job, api: String) async throws {
        do {
            try job.validate(JobLimits(config))
        } catch let error as SluiceError {
            throw APIError(error)
        }
        let meta = RedisKeys.meta(job.id)
        do {
            let replies = try await redis.execute([
                RedisCommand("HSET", meta, "tenant", job.tenant, "submitted_at", String(Date().timeIntervalSince1970), "api", api),
                RedisCommand("EXPIRE", meta, String(config.redis.eventTTLSeconds)),
            ])
            if let error = replies[0].errorMessage { throw SluiceError(.internal, error) }
        } catch {
            logger.error("cannot record a job in Redis: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        let record = try JSON.encode(job.encoded())
        do {
            try await producer.send(topic: config.requestsTopic(for: job.priority), key: job.id, value: record)
        } catch let error as KafkaError where error.isTooLarge {
            // The request itself is too large for the queue: retrying cannot help.
            logger.warning("a job too large for the requests topic: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError(
                .contentTooLarge, "invalid_request_error",
                "the job is \(record.count) bytes, more than the job queue takes (kafka.max_message_bytes is \(config.kafka.maxMessageBytes), and the topic's max.message.bytes may be lower); send a smaller request",
                code: "request_too_large")
        } catch {
            logger.error("cannot submit a job to Kafka: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError.unavailable("the job queue is not reachable; try again later")
        }
        metrics.jobSubmitted(api: api)
        logger.debug("job submitted", metadata: ["job_id": "\(job.id)", "api": "\(api)", "tenant": "\(job.tenant)"])
    }

    /// Produces `{"type": "cancel", "job_id": id}`, keyed by the job id, to the control
    /// topic, and notes the request in the job's meta.
    func requestCancel(_ jobID: String, reason: String) async throws {
        var message = Array(#"{"type":"cancel","job_id":"#.utf8)
        JSON.appendString(jobID, to: &message)
        message.append(UInt8(ascii: "}"))
        do {
            try await producer.send(topic: config.kafka.controlTopic, key: jobID, value: message)
        } catch {
            logger.error("cannot produce a cancel message: \(error)", metadata: ["job_id": "\(jobID)"])
            throw APIError.unavailable("the control topic is not reachable; try again later")
        }
        redis.send([RedisCommand("HSET", RedisKeys.meta(jobID), "cancel_requested_at", String(Date().timeIntervalSince1970))])
        metrics.jobCancelled(reason: reason)
        logger.info("job cancel requested", metadata: ["job_id": "\(jobID)", "reason": "\(reason)"])
    }

    /// Cancels the job of a client that went away, if `gateway.cancel_on_disconnect`.
    func cancelAfterDisconnect(_ jobID: String) async {
        guard config.gateway.cancelOnDisconnect else { return }
        try? await requestCancel(jobID, reason: "disconnect")
    }

    /// What the gateway knows of a job: its owner, and whether a cancel was asked.
    struct JobMeta {
        var tenant: String
        var cancelRequested: Bool
    }

    /// The job's meta if it exists and belongs to `tenant`; otherwise a 404, the same
    /// for a job of another tenant as for no job at all.
    @discardableResult
    func requireJob(_ id: String, tenant: String) async throws -> JobMeta {
        let replies: [RedisReply]
        do {
            replies = try await redis.execute([
                RedisCommand("HMGET", RedisKeys.meta(id), "tenant", "cancel_requested_at"),
                RedisCommand("EXISTS", RedisKeys.events(id), RedisKeys.result(id)),
            ])
        } catch {
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        let fields = replies[0].array ?? []
        let owner = fields.first?.string
        let exists = owner != nil || (replies[1].int ?? 0) > 0
        // A job submitted straight to Kafka has no meta: it belongs to the default tenant.
        guard exists, (owner ?? "default") == tenant else {
            throw APIError.notFound("no job \"\(id)\"", param: "id", code: "job_not_found")
        }
        return JobMeta(tenant: owner ?? "default", cancelRequested: fields.count > 1 && fields[1].string != nil)
    }

    /// A new job id.
    static func newJobID() -> String {
        UUID().uuidString.lowercased()
    }
}
