import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceSupport

/// Runs one provider attempt over an HTTP transport (`CurlClient` in the worker, a
/// scripted one in tests): sends the request, reads the stream (or the whole body),
/// hands each normalised chunk to its sink as it arrives, and returns what it all added
/// up to.
public struct ProviderRunner<Transport: ProviderTransport>: Sendable {
    public let client: Transport

    public init(client: Transport) { self.client = client }

    /// The largest non-streaming or error body read.
    static var maxBodyBytes: Int { 32 * 1024 * 1024 }

    /// - Parameter request: `format.makeRequest(call)`, if the caller has made it already.
    /// - Parameter sink: where each normalised chunk goes as it arrives; a streamed body
    ///   is parsed where its bytes arrive (`CurlClient`'s thread), so `sink` is called
    ///   there.
    public func run<Sink: ChunkSink>(
        _ call: ProviderCall, format: any WireFormat, request: CurlRequest? = nil, sink: Sink
    ) async throws -> ProviderOutcome {
        // Every local of an async function has a slot of its own in the task's frame for as
        // long as the call lasts, and a streamed attempt lasts as long as its stream: the
        // work with large temporaries is kept in synchronous helpers and in the branches'
        // own async functions, so that a stream waits in a few hundred bytes.
        let request = try request ?? format.makeRequest(call)
        let timing = TimingRecorder(start: MonotonicClock.now())
        let response: ProviderResponse<Transport.Body>
        do {
            response = try await client.send(request)
        } catch let error as HTTPClientError {
            throw ProviderRunner.mapError(error, provider: call.provider.name)
        }
        guard (200..<300).contains(response.status) else {
            throw await ProviderRunner.statusFailure(response, call: call, format: format)
        }
        if !call.stream {
            return try await ProviderRunner.whole(response, call: call, format: format, timing: timing, sink: sink)
        }
        return try await ProviderRunner.stream(response, call: call, format: format, timing: timing, sink: sink)
    }

    /// The error for a response whose status is not 2xx, its body read for the message.
    private static func statusFailure(_ response: ProviderResponse<Transport.Body>, call: ProviderCall, format: any WireFormat) async -> ProviderError {
        let body = (try? await response.body.collect(upTo: 1 << 20)) ?? []
        return statusFailure(status: response.status, headers: response.headers, body: body, call: call, format: format)
    }

    @inline(never)
    private static func statusFailure(status: Int, headers: HTTPHeaders, body: [UInt8], call: ProviderCall, format: any WireFormat) -> ProviderError {
        let limits = RateLimitHeaders(headers)
        // OpenAI answers 429 for a spent quota too: that one does not pass by waiting.
        let quotaSpent = status == 429 && String(decoding: body, as: UTF8.self).contains("insufficient_quota")
        let retryable = (status == 429 && !quotaSpent) || status == 408 || status >= 500
        var error = ProviderRunner.statusError(
            provider: call.provider.name, status: status, message: format.errorMessage(body), retryable: retryable,
            retryAfter: limits.retryAfter)
        error.rateLimit = limits.isEmpty ? nil : limits
        return error
    }

    @inline(never)
    private static func rateLimit(_ headers: HTTPHeaders) -> RateLimitHeaders? {
        let limits = RateLimitHeaders(headers)
        return limits.isEmpty ? nil : limits
    }

    /// A non-streaming response: read whole, handed to the sink as one chunk.
    private static func whole<Sink: ChunkSink>(
        _ response: ProviderResponse<Transport.Body>, call: ProviderCall, format: any WireFormat, timing: TimingRecorder, sink: Sink
    ) async throws -> ProviderOutcome {
        let body: [UInt8]
        do {
            body = try await response.body.collect(upTo: ProviderRunner.maxBodyBytes)
        } catch let error as HTTPClientError {
            throw ProviderRunner.mapError(error, provider: call.provider.name)
        }
        let now = MonotonicClock.now()
        var (outcome, chunk) = try wholeOutcome(body, headers: response.headers, call: call, format: format, timing: timing, at: now)
        if !sink.receive(chunk, at: now) { await sink.whileHeld() }
        outcome.raw = call.passthroughBody != nil ? try? JSON.decode(JSONValue.self, from: body) : nil
        return outcome
    }

    @inline(never)
    private static func wholeOutcome(
        _ body: [UInt8], headers: HTTPHeaders, call: ProviderCall, format: any WireFormat, timing: TimingRecorder, at now: Double
    ) throws -> (ProviderOutcome, ProviderChunk) {
        var timing = timing
        var accumulator = StreamAccumulator()
        timing.byteReceived(at: now)
        let completion = try format.decodeCompletion(body, call: call)
        // One chunk carrying the whole reply, so a reader of the job's events sees it.
        let chunk = ChatCompletionChunk(
            id: completion.id, created: completion.created, model: completion.model,
            systemFingerprint: completion.systemFingerprint,
            choices: completion.choices.map { c in
                ChunkChoice(
                    index: c.index,
                    delta: ChunkDelta(
                        role: c.message.role, content: c.message.content, refusal: c.message.refusal,
                        toolCalls: c.message.toolCalls?.enumerated().map { i, t in
                            ToolCallDelta(index: i, id: t.id, type: t.type, function: .init(name: t.function.name, arguments: t.function.arguments))
                        }),
                    finishReason: c.finishReason)
            },
            usage: completion.usage)
        accumulator.add(chunk)
        if chunk.carriesContent { timing.contentChunk(at: now) }
        let outcome = ProviderOutcome(accumulator: accumulator, timing: timing, streamComplete: true, raw: nil, rateLimit: rateLimit(headers))
        return (outcome, ProviderChunk(json: try JSON.encode(chunk), chunk: chunk))
    }

    /// A streamed response, parsed where its bytes arrive.
    private static func stream<Sink: ChunkSink>(
        _ response: ProviderResponse<Transport.Body>, call: ProviderCall, format: any WireFormat, timing: TimingRecorder, sink: Sink
    ) async throws -> ProviderOutcome {
        let stream = StreamReader(decoder: format.makeStreamDecoder(call), timing: timing, sink: sink, rateLimit: rateLimit(response.headers))
        // The first-token watchdog aborts the transfer; the consumer then sees its error.
        let body = response.body
        stream.watchdog = call.firstTokenTimeout.map { limit in
            Task {
                try? await Task.sleep(for: limit)
                guard !Task.isCancelled else { return }
                body.abort(with: HTTPClientError(.idleTimeout, "no token within \(limit) of the request"))
            }
        }
        // The stream's state is the transport thread's until `consume` returns, the
        // task's after.
        defer { stream.watchdog?.cancel() }
        do {
            do {
                try await body.consume(stream, whenPaused: { await sink.whileHeld() })
            } catch {
                // A chunk the decoder refused stopped the transfer: that is the error.
                throw stream.failure ?? error
            }
            // The last event (no blank line after it) may hold the stream back too.
            while try stream.finish() { await sink.whileHeld() }
        } catch {
            // Keep what was relayed: a cancelled or failed job still reports its usage.
            throw failed(error, stream: stream, provider: call.provider.name)
        }
        return stream.outcome
    }

    /// `error` as the attempt's failure, carrying what was streamed before it.
    @inline(never)
    private static func failed<Sink: ChunkSink>(_ error: any Error, stream: StreamReader<Sink>, provider: String) -> ProviderError {
        var mapped = (error as? HTTPClientError).map { ProviderRunner.mapError($0, provider: provider) }
            ?? (error as? ProviderError)
            ?? ProviderError(.protocolError, "\(error)", retryable: false)
        mapped.partial = ProviderOutcome(
            accumulator: stream.accumulator, timing: stream.timing, streamComplete: false, raw: nil, rateLimit: stream.rateLimit)
        return mapped
    }

    /// A transport failure as a tenant may read it: what happened and to which provider;
    /// libcurl's text, with its host and port, goes to `detail` for the log.
    static func mapError(_ error: HTTPClientError, provider: String) -> ProviderError {
        let name = "provider \"\(provider)\""
        return switch error.code {
        case .idleTimeout: ProviderError(.timeout, "\(name) sent nothing within the idle timeout", retryable: true, detail: error.message)
        case .totalTimeout: ProviderError(.timeout, "\(name) did not finish within the job's timeout", retryable: true, detail: error.message)
        case .cancelled: ProviderError(.cancelled, "the request was cancelled", retryable: false)
        case .invalidRequest:
            // "invalid header field \"authorization\"" says which header and nothing of
            // the value; a message about the URL names its host and stays in the log.
            ProviderError(
                .invalidRequest,
                "the request to \(name) cannot be sent: \(error.message.contains(":") ? "its URL was refused" : error.message) (a per-job api_key must be one line of text)",
                retryable: false, detail: error.message)
        case .connect: ProviderError(.connection, "could not connect to \(name)", retryable: true, detail: error.message)
        case .tlsVerification:
            // Not retried: an untrusted certificate stays untrusted until the config changes.
            ProviderError(
                .connection,
                "could not connect to \(name): TLS verification of its certificate failed (trust its CA with providers.\(provider).ca_file)",
                retryable: false, detail: error.message)
        default: ProviderError(.connection, "the connection to \(name) failed", retryable: true, detail: error.message)
        }
    }

    /// An error status as a tenant may read it. The provider's own message is kept where
    /// it is about the request (a 4xx such as 400 or 404); where it is about the
    /// operator's account or the provider's inside (401, 403, 407, 5xx) only the status is.
    static func statusError(provider: String, status: Int, message: String?, retryable: Bool, retryAfter: Double?) -> ProviderError {
        let head = "\(provider) answered \(status)"
        let aboutRequest = (400..<500).contains(status) && ![401, 403, 407].contains(status)
        guard aboutRequest, let message, !message.isEmpty else {
            return ProviderError(.http, head, status: status, retryable: retryable, retryAfter: retryAfter, detail: message)
        }
        let short = message.count > 300 ? String(message.prefix(300)) + "…" : message
        return ProviderError(.http, "\(head): \(short)", status: status, retryable: retryable, retryAfter: retryAfter, detail: message)
    }

    /// `Retry-After` as seconds or an HTTP date, at most a day (a job's longest
    /// timeout); nil when it is neither, or not a finite number.
    static func retryAfter(_ value: String?) -> Double? {
        RateLimitHeaders.retryAfter(value, now: Date())
    }
}

/// Where an attempt's normalised chunks go as they arrive.
public protocol ChunkSink: AnyObject, Sendable {
    /// One chunk, received at `now` (monotonic seconds). Called on the thread its bytes
    /// arrived on (`CurlClient`'s for a stream), one call at a time. Answer false to hold
    /// the stream back: nothing more is read until `whileHeld()` returns.
    func receive(_ chunk: ProviderChunk, at now: Double) -> Bool
    /// Awaited on the attempt's task after `receive` answered false; the stream then
    /// carries on.
    func whileHeld() async
}

/// A stream's parsing state, fed where the transport receives the bytes: parse the SSE
/// events, decode them into chunks, add them up, time them, hand them to the sink.
///
/// `@unchecked Sendable`: it is handed to the transport's thread when the body's
/// consumption starts and touched only by that thread, one write at a time, until
/// `consume` returns (the transport's lock orders those touches before the return); the
/// attempt's task reads it after that. `watchdog` is set before the hand-over.
private final class StreamReader<Sink: ChunkSink>: HTTPBodyConsumer, @unchecked Sendable {
    var parser = SSEParser()
    var decoder: any StreamDecoder
    var accumulator = StreamAccumulator()
    var timing: TimingRecorder
    /// What the decoder refused; the transfer is stopped.
    var failure: (any Error)?
    /// Aborts the transfer if no content comes in time; cancelled at the first.
    var watchdog: Task<Void, Never>?
    let sink: Sink

    /// The response's rate-limit headers, for the outcome.
    let rateLimit: RateLimitHeaders?
    /// The chunks of the last event not yet handed to the sink (the sink held the stream).
    private var pending: [ProviderChunk] = []
    /// When the body ended, once it has.
    private var finishedAt: Double?

    init(decoder: any StreamDecoder, timing: TimingRecorder, sink: Sink, rateLimit: RateLimitHeaders?) {
        self.decoder = decoder
        self.timing = timing
        self.sink = sink
        self.rateLimit = rateLimit
    }

    /// The body ended: decodes what the parser still holds (an event with no blank line
    /// after it) and hands its chunks on. Returns true when the sink asked to hold the
    /// stream back: the caller awaits `whileHeld()` and calls again.
    func finish() throws -> Bool {
        if finishedAt == nil {
            finishedAt = MonotonicClock.now()
            if let last = parser.finish() { pending = try decoder.decode(last) }
        }
        let now = finishedAt ?? MonotonicClock.now()
        while !pending.isEmpty {
            let c = pending.removeFirst()
            accumulator.add(c.chunk)
            if c.chunk.carriesContent { timing.contentChunk(at: now) }
            if !sink.receive(c, at: now) { return true }
        }
        return false
    }

    /// What the stream added up to.
    var outcome: ProviderOutcome {
        let complete = decoder.isComplete || accumulator.allChoicesFinished
        return ProviderOutcome(accumulator: accumulator, timing: timing, streamComplete: complete, raw: nil, rateLimit: rateLimit)
    }


    func receive(_ bytes: UnsafeRawBufferPointer) -> BodyDisposition {
        let now = MonotonicClock.now()
        timing.byteReceived(at: now)
        var hold = false
        parser.feed(bytes) { event in
            guard failure == nil else { return }
            do {
                for c in try decoder.decode(event) {
                    accumulator.add(c.chunk)
                    if c.chunk.carriesContent {
                        timing.contentChunk(at: now)
                        if let watchdog {
                            watchdog.cancel()
                            self.watchdog = nil
                        }
                    }
                    if !sink.receive(c, at: now) { hold = true }
                }
            } catch {
                failure = error
            }
        }
        if failure != nil { return .stop }
        return hold ? .pause : .proceed
    }
}
