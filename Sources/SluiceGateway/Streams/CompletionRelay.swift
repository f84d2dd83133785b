import HTTPTypes
import Hummingbird
import Logging
import SluiceCore
import SluiceRedis

/// How a synchronous completion endpoint answers.
struct CompletionStyle: Sendable {
    enum Body: Sendable {
        /// The final unified response (a `chat.completion` with `usage` and `metrics`).
        case unified
        /// The provider's own response (the result's `raw`), for passthrough.
        case raw
    }

    /// The endpoint family, for metrics and logs: `openai`, `llmstudio`, `portkey`, `passthrough`.
    var api: String
    /// Answer with Server-Sent Events (`data: {chunk}` lines, then `data: [DONE]`).
    var stream: Bool
    /// Relay usage-only chunks (`"choices": []`), which OpenAI sends only to clients
    /// that asked with `stream_options.include_usage`.
    var includeUsageChunk: Bool
    var body: Body = .unified
}

/// The synchronous endpoints: each request becomes a Kafka job like any other, and the
/// gateway follows the job's events to answer it.
///
/// The job's channel is subscribed before the job is produced, so not even its first
/// event can be missed. A client that goes away before the end frees its subscription
/// at once and, with `gateway.cancel_on_disconnect` (the default), cancels its job.
extension Gateway {
    func runCompletion(_ job: Job, request: Request, style: CompletionStyle) async throws -> Response {
        var job = job
        let feed: JobEventFeed
        do {
            feed = try await follower.subscribe(jobID: job.id)
        } catch {
            logger.error("cannot subscribe to a job's events: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        do {
            // The gateway chose the id: a job already under it is not this request's.
            guard try await submit(&job, api: style.api) == .produced else { throw APIError.idConflict(job.id) }
        } catch {
            feed.cancel()
            throw error
        }
        if style.stream {
            return streamCompletion(feed, job: job, request: request, style: style)
        }
        return try await awaitCompletion(feed, job: job, request: request, style: style)
    }

    /// Waits for `chat_finished`, then answers with the stored result. Nothing is
    /// relayed, so a feed that overflowed (the task was starved, not the client slow) is
    /// simply subscribed again; the replay stream fills what it missed.
    private func awaitCompletion(_ feed: JobEventFeed, job: Job, request: Request, style: CompletionStyle) async throws -> Response {
        let jobID = job.id
        let end: JobEventFollower.End
        do {
            var feed = feed
            var seen = 0
            end = try await request.watchingDisconnect { disconnect in
                while true {
                    do {
                        return try await feed.follow(afterSeq: seen, disconnect: disconnect) { item in
                            if case .event(let seq, _, _, _) = item { seen = seq }
                        }
                    } catch let error as RedisError where error.code == .subscriptionOverflow {
                        feed = try await follower.subscribe(jobID: jobID)
                    }
                }
            }
        } catch {
            feed.cancel()
            logger.error("lost a job's event feed: \(error)", metadata: ["job_id": "\(jobID)"])
            throw APIError.unavailable("lost the job's event feed; follow it at /v1/jobs/\(jobID)")
        }
        let headers: HTTPFields = [.sluiceJobID: jobID, .connection: "close"]
        if end == .disconnected {
            await cancelAfterDisconnect(job)
            return Response(status: .init(code: 499, reasonPhrase: "Client Closed Request"), headers: headers)
        }

        let result = try await storedResult(jobID)
        let all = 0..<result.count
        let status = JSONPeek.plainString(of: "status", in: result, range: all)
        if status == UnifiedResponse.Status.succeeded.rawValue {
            if style.body == .raw, let raw = JSONPeek.value(of: "raw", in: result, range: all), result[raw.lowerBound] != UInt8(ascii: "n") {
                return Response.json(Array(result[raw]), headers: headers)
            }
            return Response.json(result, headers: headers)
        }
        let error = JSONPeek.value(of: "error", in: result, range: all).flatMap { try? JSON.decode(JSONValue.self, from: result[$0]) }
        let apiError = APIError.jobFailed(status: status, error: error)
        return Response.json(apiError.json, status: apiError.status, headers: headers)
    }

    /// The job's final response as stored by the worker (before it published `chat_finished`).
    func storedResult(_ jobID: String) async throws -> [UInt8] {
        let reply: RedisReply
        do {
            reply = try await redis.execute(RedisCommand("GET", RedisKeys.result(jobID)))
        } catch {
            throw APIError.unavailable("the event store is not reachable; the result is at /v1/jobs/\(jobID)")
        }
        guard let bytes = reply.bytes else {
            throw APIError(.badGateway, "server_error", "job \"\(jobID)\" finished but its result is not in Redis")
        }
        return bytes
    }

    /// Relays the job's chunks as they come.
    private func streamCompletion(_ feed: JobEventFeed, job: Job, request: Request, style: CompletionStyle) -> Response {
        sseResponse(CompletionStream(gateway: self, job: job, style: style), feed: feed, afterSeq: 0, request: request,
                    headers: [.sluiceJobID: job.id])
    }
}

/// The frames of a streamed completion (OpenAI's `data:` chunks and `[DONE]`), and how
/// it ends: a client that left cancels its job (with `gateway.cancel_on_disconnect`);
/// any other early end says where the result will be, since such a stream cannot be
/// resumed.
struct CompletionStream: SSERelay {
    let gateway: Gateway
    let job: Job
    let style: CompletionStyle
    var runs = RunGuard()

    mutating func frame(_ item: JobEventFollower.Item, into pending: inout ByteBuffer) throws {
        if case .event(_, let name, let envelope, _) = item,
           !runs.admit(envelope, isChunk: name == EventName.chunk.rawValue) {
            throw RunRestarted()
        }
        CompletionFrames.write(item, style: style, to: &pending)
    }

    mutating func close(_ end: SSEStreamEnd, into pending: inout ByteBuffer) async {
        let jobID = job.id
        let error: APIError
        switch end {
        case .finished:
            return
        case .disconnected:
            await gateway.cancelAfterDisconnect(job)
            return
        case .shutdown:
            // The job goes on in the worker; only this relay stops.
            error = APIError.unavailable("the gateway is shutting down; the job goes on and its result will be at /v1/jobs/\(jobID)")
        case .cutOff:
            // The client reads slower than the job writes: cut rather than buffer
            // without end. There is no resume here; the result stays at /v1/jobs/{id}.
            error = APIError.unavailable(
                "the client fell more than \(gateway.config.gateway.readerBufferEvents) events behind the job's stream and was cut; the result will be at /v1/jobs/\(jobID)")
        case .failed(let failure) where failure is RunRestarted:
            // What was streamed came from a run that was cut off (its worker stopped);
            // another run starts over. Mixing the two would garble the reply.
            error = APIError.jobFailed(status: nil, error: [
                "type": "run_restarted",
                "message": .string("the job's run was interrupted and the job restarted on another worker; what was streamed is incomplete; the result will be at /v1/jobs/\(jobID)"),
            ])
        case .failed(let failure):
            gateway.logger.error("lost a job's event feed: \(failure)", metadata: ["job_id": "\(jobID)"])
            error = APIError.unavailable("lost the job's event feed; its result will be at /v1/jobs/\(jobID)")
        }
        // What was relayed before the end goes first, as it would have alone.
        let bytes = error.jsonBytes
        SSEFormat.writeData(bytes, range: 0..<bytes.count, to: &pending)
        pending.writeImmutableBuffer(SSEFormat.done)
    }
}

/// A write to the client failed: it has gone.
struct ClientGone: Error {}

/// A new run of the job began after another run's chunks were relayed.
struct RunRestarted: Error {}

/// Keeps a relay to one run of a job. Every envelope of a run starts with the same
/// `{"job_id":…,"run":…` prefix, up to `,"seq":`; a different prefix is a different run.
/// Before any chunk was relayed, a new run is simply followed instead (the old one said
/// nothing the reader saw); after, the relay must end.
struct RunGuard {
    private var prefix: [UInt8]?
    private var relayedChunk = false
    private static let seqKey = Array(#","seq":"#.utf8)

    mutating func admit(_ envelope: [UInt8], isChunk: Bool) -> Bool {
        guard let end = RunGuard.prefixEnd(envelope) else { return true }
        let runPrefix = envelope[..<end]
        if let prefix, !prefix.elementsEqual(runPrefix) {
            if relayedChunk { return false }
            self.prefix = Array(runPrefix)
        } else if prefix == nil {
            prefix = Array(runPrefix)
        }
        if isChunk { relayedChunk = true }
        return true
    }

    private static func prefixEnd(_ bytes: [UInt8]) -> Int? {
        let key = seqKey
        guard bytes.count > key.count else { return nil }
        var i = 0
        while i + key.count <= bytes.count {
            if bytes[i] == key[0], bytes[i + 1] == key[1], bytes[(i + 2)..<(i + key.count)].elementsEqual(key[2...]) { return i }
            i += 1
        }
        return nil
    }
}

/// The OpenAI-style frames of a job's events: each chunk's `data` as a `data:` line, a
/// failure as an OpenAI error object, `chat_finished` as `data: [DONE]`; the other
/// events are not sent.
enum CompletionFrames {
    /// Appends the frame of `item`, if it has one, to `buffer`.
    static func write(_ item: JobEventFollower.Item, style: CompletionStyle, to buffer: inout ByteBuffer) {
        switch item {
        case .heartbeat:
            buffer.writeImmutableBuffer(SSEFormat.heartbeat)
        case .event(_, let name, let envelope, let data):
            switch name {
            case EventName.chunk.rawValue:
                if !style.includeUsageChunk, JSONPeek.isUsageOnlyChunk(envelope, range: data) { return }
                SSEFormat.writeData(envelope, range: data, to: &buffer)
            case EventName.chatResponseFailure.rawValue:
                let failure = try? JSON.decode(JSONValue.self, from: envelope[data])
                let error = APIError.jobFailed(status: nil, error: failure?["error"])
                let bytes = error.jsonBytes
                SSEFormat.writeData(bytes, range: 0..<bytes.count, to: &buffer)
            case EventName.chatFinished.rawValue:
                buffer.writeImmutableBuffer(SSEFormat.done)
            default:
                return
            }
        }
    }
}
