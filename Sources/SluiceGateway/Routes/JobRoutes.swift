import Foundation
import HTTPTypes
import Hummingbird
import SluiceCore
import ServiceLifecycle
import SluiceRedis

/// The job API: submit a job (docs/contract.md, Jobs), read its status and result,
/// follow its events (resumable), cancel it.
extension Gateway {
    func addJobRoutes(to router: Router<GatewayContext>) {
        router.post("/v1/jobs") { request, context in try await self.submitJob(request, context: context) }
        router.get("/v1/jobs/:id") { request, context in try await self.jobStatus(request, context: context) }
        router.delete("/v1/jobs/:id") { request, context in try await self.cancelJob(request, context: context) }
        router.get("/v1/jobs/:id/events") { request, context in try await self.jobEvents(request, context: context) }
    }

    func submitJob(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        var request = request
        let body = try await readJSONObject(&request)
        var job: Job
        do {
            job = try Job.parse(.object(body), limits: JobLimits(config))
        } catch let error as SluiceError {
            throw APIError(error)
        }
        job.tenant = tenant
        do {
            _ = try config.resolve(provider: job.provider, model: job.model)
        } catch let error as SluiceError {
            throw APIError.badRequest(error.message, param: "model", code: error.code.rawValue)
        }
        var status: JSONValue = "queued"
        if try await submit(&job, api: "jobs", trace: request.traceContext) == .existing {
            // The same tenant sent this id before: the existing job, as it stands now.
            status = try await currentStatus(job.id, meta: try await requireJob(job.id, tenant: tenant)).status
        }
        return Response.json([
            "id": .string(job.id),
            "status": status,
            "status_url": .string("/v1/jobs/\(job.id)"),
            "events_url": .string("/v1/jobs/\(job.id)/events"),
        ], status: .accepted)
    }

    func jobStatus(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        let id = try Gateway.jobID(in: context)
        let meta = try await requireJob(id, tenant: tenant)
        let current = try await currentStatus(id, meta: meta)
        if let result = current.result {
            return Response.json(["id": .string(id), "status": current.status, "result": result])
        }
        return Response.json(["id": .string(id), "status": current.status, "result": .null, "last_event": current.lastEvent])
    }

    /// A job's status, from its stored result or else its last event.
    func currentStatus(_ id: String, meta: JobMeta) async throws -> (status: JSONValue, result: JSONValue?, lastEvent: JSONValue) {
        let stored: (result: [UInt8]?, lastEvent: [UInt8]?)
        do {
            stored = try await store.progress(jobID: id)
        } catch {
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        if let result = stored.result, let value = try? JSON.decode(JSONValue.self, from: result) {
            return (value["status"] ?? "succeeded", value, .null)
        }
        var status: JSONValue = "queued"
        var lastEvent: JSONValue = .null
        if let envelope = stored.lastEvent, let event = try? JSON.decode(JSONValue.self, from: envelope) {
            status = "running"
            lastEvent = event
        }
        if meta.cancelRequested { status = "cancelling" }
        return (status, nil, lastEvent)
    }

    /// Produces a cancel message to the control topic; a worker running the job stops it.
    /// A job already finished is left as it is and its final status answered (200).
    func cancelJob(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        let id = try Gateway.jobID(in: context)
        let meta = try await requireJob(id, tenant: tenant)
        let result = try? await store.result(jobID: id)
        if let bytes = result ?? nil, let status = JSONPeek.plainString(of: "status", in: bytes, range: 0..<bytes.count) {
            return Response.json(["id": .string(id), "status": .string(status)])
        }
        try await requestCancel(id, tenant: meta.tenant, submissionID: meta.submissionID, reason: "delete")
        return Response.json(["id": .string(id), "status": "cancelling"], status: .accepted)
    }

    /// The `{id}` of a job route, held to the rule of job ids (`Job.isValidID`).
    static func jobID(in context: GatewayContext) throws -> String {
        let id = try context.parameters.require("id")
        guard Job.isValidID(id) else {
            throw APIError.badRequest("the job id in the path must be \(Job.idRule)", param: "id", code: "invalid_job_id")
        }
        return id
    }

    /// The largest `seq` a reader may resume after: JSON's largest exact integer, far
    /// beyond any job's events, and small enough that `seq + 1` cannot overflow.
    static let maxResumeSeq = 9_007_199_254_740_991

    /// The `seq` given by `Last-Event-ID` or `?last_event_id=` (the header wins), 0 if
    /// neither; 400 for anything but an integer from 0 to `maxResumeSeq`.
    static func resumeAfter(_ request: Request) throws -> Int {
        let header = request.headers[.lastEventID]
        guard let given = header ?? request.uri.queryParameters.get("last_event_id") else { return 0 }
        let name = header != nil ? "Last-Event-ID" : "last_event_id"
        guard let n = Int(given.trimmingCharacters(in: .whitespaces)), (0...maxResumeSeq).contains(n) else {
            throw APIError.badRequest(
                "\(name) must be an integer from 0 to \(maxResumeSeq) (the seq of the last event received)",
                param: name, code: "invalid_last_event_id")
        }
        return n
    }

    /// Server-Sent Events of every event of the job: what already happened, then live,
    /// until `chat_finished`. `Last-Event-ID` (or `?last_event_id=`) resumes after that
    /// `seq` with no gap and no repeat.
    ///
    /// A tenant holds at most `gateway.max_readers_per_tenant` streams open on this
    /// process (429 beyond). A reader that falls more than `gateway.reader_buffer_events`
    /// behind the job is cut: the stream ends, and the client resumes with `Last-Event-ID`.
    func jobEvents(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        let id = try Gateway.jobID(in: context)
        let lastEventID = try Gateway.resumeAfter(request)
        try await requireJob(id, tenant: tenant)
        guard let slot = readers.acquire(tenant) else {
            metrics.sseReaderRefused()
            throw APIError.tooManyReaders(limit: readers.limit)
        }
        let feed: JobEventFeed
        do {
            feed = try await follower.subscribe(jobID: id)
        } catch {
            slot.release()
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        return sseResponse(JobEventStream(gateway: self, jobID: id, tenant: tenant, slot: slot), feed: feed, afterSeq: lastEventID, request: request,
                           eventLoop: context.eventLoop)
    }
}

/// The frames of `GET /v1/jobs/{id}/events` (`id:`, `event:`, `data:` and heartbeats).
/// However it ends, the client resumes with `Last-Event-ID`: a gateway shutting down
/// ends its event streams rather than wait for every job to end, and a reader that fell
/// behind is cut so that its buffer is freed.
struct JobEventStream: SSERelay {
    let gateway: Gateway
    let jobID: String
    let tenant: String
    let slot: ReaderSlot

    func frame(_ item: JobEventFollower.Item, into pending: inout ByteBuffer) {
        switch item {
        case .event(let seq, let name, let envelope, _):
            SSEFormat.writeEvent(id: seq, name: name, data: envelope, range: 0..<envelope.count, to: &pending)
        case .heartbeat:
            pending.writeImmutableBuffer(SSEFormat.heartbeat)
        }
    }

    func close(_ end: SSEStreamEnd, into pending: inout ByteBuffer) async {
        slot.release()
        switch end {
        case .cutOff:
            gateway.logger.info("event reader fell behind and was cut", metadata: ["job_id": "\(jobID)", "tenant": "\(tenant)"])
        case .failed(let error):
            gateway.logger.debug("event stream ended: \(error)", metadata: ["job_id": "\(jobID)"])
        case .finished, .disconnected, .shutdown:
            break
        }
    }
}
