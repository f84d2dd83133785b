import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SluiceCore
import ServiceLifecycle
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
    func runCompletion(_ job: Job, request: Request, context: GatewayContext, style: CompletionStyle) async throws -> Response {
        var job = job
        // A job that will be refused costs no subscription.
        try check(job)
        let feed: JobEventFeed
        do {
            feed = try await follower.subscribe(jobID: job.id)
        } catch {
            logger.error("cannot subscribe to a job's events: \(error)", metadata: ["job_id": "\(job.id)"])
            throw APIError.unavailable("the event store is not reachable; try again later")
        }
        do {
            // The gateway chose the id: a job already under it is not this request's.
            guard try await submit(&job, api: style.api, trace: request.traceContext) == .produced else { throw APIError.idConflict(job.id) }
        } catch {
            feed.cancel()
            throw error
        }
        if style.stream {
            return try await streamCompletion(feed, job: job, request: request, eventLoop: context.eventLoop, style: style)
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
        var answerHeaders = headers
        if let retryAfter = apiError.retryAfter { answerHeaders[.retryAfter] = String(retryAfter) }
        return Response.json(apiError.json, status: apiError.status, headers: answerHeaders)
    }

    /// The job's final response as stored by the worker (before it published `chat_finished`).
    func storedResult(_ jobID: String) async throws -> [UInt8] {
        let stored: [UInt8]?
        do {
            stored = try await store.result(jobID: jobID)
        } catch {
            throw APIError.unavailable("the event store is not reachable; the result is at /v1/jobs/\(jobID)")
        }
        guard let bytes = stored else {
            throw APIError(.badGateway, "server_error", "job \"\(jobID)\" finished but its result is not in Redis")
        }
        return bytes
    }

    /// Relays the job's chunks as they come.
    ///
    /// The status waits for the provider's answer: nothing is sent until the job's first
    /// chunk, its end, or the first keep-alive is due (`JobEventFollower.heartbeat`, 15 s).
    /// A job that fails before any chunk (the provider refused the request, a 429 or a 5xx
    /// that outlasted the retries, a timeout) is answered like a non-streaming one: the
    /// error's status with a JSON error, never a 200 and an error line.
    private func streamCompletion(
        _ feed: JobEventFeed, job: Job, request: Request, eventLoop: any EventLoop, style: CompletionStyle
    ) async throws -> Response {
        let jobID = job.id
        var opening = StreamOpening(style: style, jobID: jobID)
        let end: JobEventFollower.End
        // A gateway told to stop does not wait out the opening: the stream starts and
        // ends at once, saying where the result will be.
        let stopping = ClientDisconnect()
        do {
            end = try await withGracefulShutdownHandler {
                try await feed.follow(afterSeq: 0, disconnect: stopping) { item in
                    opening.take(item)
                } flush: {
                    if opening.isDecided { throw JobEventFollower.PauseFollow() }
                }
            } onGracefulShutdown: {
                stopping.fire()
            }
        } catch {
            feed.cancel()
            logger.error("lost a job's event feed: \(error)", metadata: ["job_id": "\(jobID)"])
            throw APIError.unavailable("lost the job's event feed; follow it at /v1/jobs/\(jobID)")
        }
        if let refusal = opening.refusal {
            feed.cancel()
            var headers: HTTPFields = [.sluiceJobID: jobID]
            if let retryAfter = refusal.retryAfter { headers[.retryAfter] = String(retryAfter) }
            return Response.json(refusal.json, status: refusal.status, headers: headers)
        }
        var pausedAt = 0
        if case .paused(let seq) = end { pausedAt = seq }
        let resumeAfter = pausedAt
        let opened = opening

        var stream = CompletionStream(gateway: self, job: job, style: style)
        stream.runs = opened.runs
        stream.frames = opened.frames
        let ended: SSEStreamEnd? =
            opened.finished ? .finished
            : opened.restarted ? .failed(RunRestarted())
            : end == .disconnected ? .shutdown : nil
        return sseResponse(stream, feed: feed, afterSeq: resumeAfter, request: request, eventLoop: eventLoop,
                           headers: [.sluiceJobID: jobID], first: opened.pending, ended: ended)
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
    var frames: CompletionFrames

    init(gateway: Gateway, job: Job, style: CompletionStyle) {
        self.gateway = gateway
        self.job = job
        self.style = style
        self.frames = CompletionFrames(style: style, jobID: job.id)
    }

    mutating func frame(_ item: JobEventFollower.Item, into pending: inout ByteBuffer) throws {
        if case .event(_, let name, let envelope, _) = item,
           !runs.admit(envelope, isChunk: name == EventName.chunk.rawValue) {
            throw RunRestarted()
        }
        frames.write(item, to: &pending)
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
        // Per relayed event: most come from the run already followed, told by comparing
        // the start of the envelope, not by searching it.
        if let prefix, RunGuard.continues(envelope, prefix) {
            if isChunk { relayedChunk = true }
            return true
        }
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

    /// Whether `envelope` starts with `prefix` followed by `,"seq":`: the same run. A key
    /// cannot occur inside a JSON string, so that is where `prefixEnd` would find it.
    private static func continues(_ envelope: [UInt8], _ prefix: [UInt8]) -> Bool {
        let key = seqKey
        guard envelope.count >= prefix.count + key.count else { return false }
        return envelope.withUnsafeBytes { e in
            prefix.withUnsafeBytes { p in
                key.withUnsafeBytes { k in
                    (p.isEmpty || memcmp(e.baseAddress!, p.baseAddress!, p.count) == 0)
                        && memcmp(e.baseAddress! + p.count, k.baseAddress!, k.count) == 0
                }
            }
        }
    }

    private static func prefixEnd(_ bytes: [UInt8]) -> Int? {
        let key = seqKey
        guard bytes.count > key.count else { return nil }
        return bytes.withUnsafeBufferPointer { b in
            key.withUnsafeBufferPointer { k in
                var i = 0
                while i + k.count <= b.count {
                    if b[i] == k[0], UnsafeBufferPointer(rebasing: b[i..<(i + k.count)]).elementsEqual(k) { return i }
                    i += 1
                }
                return nil
            }
        }
    }
}

/// What a streaming completion collects before it sends its status: the frames so far,
/// and whether the provider answered with chunks, refused the request, or the job ended.
struct StreamOpening {
    let style: CompletionStyle
    /// The frames to send first, after a 200.
    var pending = ByteBuffer()
    var runs = RunGuard()
    /// Writes the frames, standing in for chunks a finished or unfollowed job never
    /// published; the relay carries it on after the status.
    var frames: CompletionFrames
    /// The job failed before any chunk: answer with this instead of a stream.
    var refusal: APIError?
    /// A chunk, a keep-alive or the end came: the status can be sent.
    var isDecided = false
    /// `chat_finished` is among `pending`: nothing is left to follow.
    var finished = false
    /// Another run began after a chunk of this one went into `pending`.
    var restarted = false

    init(style: CompletionStyle, jobID: String) {
        self.style = style
        self.frames = CompletionFrames(style: style, jobID: jobID)
    }

    mutating func take(_ item: JobEventFollower.Item) {
        guard refusal == nil, !finished, !restarted else { return }
        switch item {
        case .heartbeat:
            // A client (or a proxy) waiting this long needs bytes: the stream starts.
            isDecided = true
        case .event(_, let name, let envelope, let data):
            guard runs.admit(envelope, isChunk: name == EventName.chunk.rawValue) else {
                restarted = true
                return
            }
            switch name {
            case EventName.chunk.rawValue:
                isDecided = true
            case EventName.chatResponseFailure.rawValue where !isDecided:
                let failure = try? JSON.decode(JSONValue.self, from: envelope[data])
                refusal = APIError.jobFailed(status: nil, error: failure?["error"])
                isDecided = true
                return
            case EventName.chatFinished.rawValue:
                finished = true
                isDecided = true
            default:
                break
            }
        }
        frames.write(item, to: &pending)
    }
}

/// The OpenAI-style frames of a job's events: each chunk's `data` as a `data:` line, a
/// failure as an OpenAI error object, `chat_finished` as `data: [DONE]`; the other
/// events are not sent.
///
/// A job can reach its final response with none of its chunks seen: a batch-lane job
/// publishes them only while followed (or never), and a finished job's replay keeps its
/// lifecycle events, not its chunks. Then the final response stands in for them
/// (`UnifiedResponse.standInChunks`), so the client still gets the whole reply. If
/// chunks were relayed and later ones are missing (the relay caught up from a replay
/// compacted meanwhile), what was relayed cannot be completed exactly: the stream ends
/// with an error naming where the result is.
struct CompletionFrames {
    let style: CompletionStyle
    let jobID: String
    private var lastSeq: Int?
    private var sawChunk = false
    /// Events were missing after a chunk was relayed.
    private var missedAfterChunk = false

    init(style: CompletionStyle, jobID: String) {
        self.style = style
        self.jobID = jobID
    }

    /// Appends the frame of `item`, if it has one, to `buffer`.
    mutating func write(_ item: JobEventFollower.Item, to buffer: inout ByteBuffer) {
        switch item {
        case .heartbeat:
            buffer.writeImmutableBuffer(SSEFormat.heartbeat)
        case .event(let seq, let name, let envelope, let data):
            if let lastSeq, seq > lastSeq + 1, sawChunk { missedAfterChunk = true }
            lastSeq = seq
            switch name {
            case EventName.chunk.rawValue:
                sawChunk = true
                if !style.includeUsageChunk, JSONPeek.isUsageOnlyChunk(envelope, range: data) { return }
                SSEFormat.writeData(envelope, range: data, to: &buffer)
            case EventName.chatCompletionResponse.rawValue:
                if !sawChunk {
                    writeStandIns(envelope[data], to: &buffer)
                } else if missedAfterChunk {
                    let error = APIError.jobFailed(status: nil, error: [
                        "type": "stream_incomplete",
                        "message": .string("some of the job's chunks were gone when this stream caught up with it (the job finished meanwhile and its replay keeps only its result); the complete result is at /v1/jobs/\(jobID)"),
                    ])
                    let bytes = error.jsonBytes
                    SSEFormat.writeData(bytes, range: 0..<bytes.count, to: &buffer)
                }
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

    /// The chunks the final response stands in for.
    private func writeStandIns(_ response: ArraySlice<UInt8>, to buffer: inout ByteBuffer) {
        guard let response = try? JSON.decode(UnifiedResponse.self, from: response) else { return }
        for chunk in response.standInChunks where style.includeUsageChunk || !chunk.choices.isEmpty {
            guard let bytes = try? JSON.encode(chunk) else { continue }
            SSEFormat.writeData(bytes, range: 0..<bytes.count, to: &buffer)
        }
    }
}
