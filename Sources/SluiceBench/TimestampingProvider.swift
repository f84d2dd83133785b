import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdHTTP2
import Logging
import NIOCore
import ServiceLifecycle
import SluiceMockProvider
import SluiceSupport
import Synchronization

/// What a bench request asks of the provider, carried in its user message as
/// `[[bench id=TOKEN n=CHUNKS d=PACE_MS f=FIRST_MS]]`: the token keys the timestamps, the
/// rest scripts the stream. The same words reach the provider through Sluice and through
/// a peer, so both are measured against the same stream.
public struct BenchScript: Sendable, Hashable {
    public var token: String
    public var chunks: Int
    public var paceMs: Int
    public var firstDelayMs: Int

    public init(token: String, chunks: Int, paceMs: Int = 0, firstDelayMs: Int = 0) {
        self.token = token
        self.chunks = chunks
        self.paceMs = paceMs
        self.firstDelayMs = firstDelayMs
    }

    public var message: String { "[[bench id=\(token) n=\(chunks) d=\(paceMs) f=\(firstDelayMs)]]" }

    /// The script in a request body, found by scanning its bytes (no JSON parse on the hot path).
    static func find(in body: ByteBuffer) -> BenchScript? {
        let bytes = body.readableBytesView
        let open = Array("[[bench ".utf8)
        guard let start = bytes.firstRange(of: open) else { return nil }
        guard let end = bytes[start.upperBound...].firstRange(of: Array("]]".utf8)) else { return nil }
        let text = String(decoding: bytes[start.upperBound..<end.lowerBound], as: UTF8.self)
        var fields: [Substring: Substring] = [:]
        for part in text.split(separator: " ") {
            guard let eq = part.firstIndex(of: "=") else { continue }
            fields[part[..<eq]] = part[part.index(after: eq)...]
        }
        guard let token = fields["id"] else { return nil }
        return BenchScript(
            token: String(token), chunks: fields["n"].flatMap { Int($0) } ?? 1,
            paceMs: fields["d"].flatMap { Int($0) } ?? 0, firstDelayMs: fields["f"].flatMap { Int($0) } ?? 0)
    }
}

/// Per token, when the provider got the request and wrote the first content chunk.
public struct ProviderStamp: Sendable {
    public var requestNs: UInt64
    public var firstContentNs: UInt64?
    /// When the stream's schedule started: content chunk i is due `firstDelayMs + i ×
    /// paceMs` after it.
    public var scheduleStartNs: UInt64?
}

/// The provider's request context: which connection a request came on (the connection
/// itself over HTTP/1.1, the parent of the request's stream over HTTP/2).
struct ProviderContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let connection: ObjectIdentifier
    let isHTTP2: Bool

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        // An accepted connection's parent is the listening socket, which has none; an
        // HTTP/2 stream's parent is its connection.
        let stream = source.channel.parent.map { $0.parent != nil } ?? false
        isHTTP2 = stream
        connection = ObjectIdentifier(stream ? source.channel.parent! : source.channel)
    }
}

/// The provider's timestamps and how many streams it has open, shared with the readers.
public final class ProviderLedger: Sendable {
    private struct State {
        var stamps: [String: ProviderStamp] = [:]
        var open = 0
        var peakOpen = 0
        var requests = 0
        var http2Requests = 0
        var connections = Set<ObjectIdentifier>()
        var accepted = 0
        var writeLateness = LatencyHistogram()
    }

    private let state = Mutex(State())

    init() {}

    func received(_ token: String, at ns: UInt64, on connection: ObjectIdentifier, http2: Bool) {
        state.withLock {
            $0.stamps[token] = ProviderStamp(requestNs: ns, firstContentNs: nil)
            $0.requests += 1
            if http2 { $0.http2Requests += 1 }
            $0.connections.insert(connection)
        }
    }

    fileprivate func accepted(secure: Bool) {
        guard secure else { return }
        state.withLock { $0.accepted += 1 }
    }

    func scheduleStarted(_ token: String, at ns: UInt64) {
        state.withLock { $0.stamps[token]?.scheduleStartNs = ns }
    }

    /// How late the provider handed a paced chunk to its connection after its due time:
    /// its own delay on a busy machine plus back-pressure from the stream's reader.
    func wrotePacedChunk(lateBy ns: Int64) {
        state.withLock { $0.writeLateness.record(nanoseconds: ns) }
    }

    /// Connections requests came on since the last reset (NIO never reuses an
    /// identifier of a channel still alive; a closed one's can come back, so this is a
    /// lower bound over a long run, exact while connections stay open).
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    /// Connections the HTTPS port accepted since the last reset, whether or not a request
    /// came on them: each is one TLS handshake.
    public var acceptedSecureConnections: Int { state.withLock { $0.accepted } }

    /// Requests that came as HTTP/2 streams since the last reset.
    public var http2RequestCount: Int { state.withLock { $0.http2Requests } }

    /// Forgets the connections seen and accepted, the HTTP/2 requests and the write
    /// lateness, for a scenario of its own.
    public func resetConnectionsAndLateness() {
        state.withLock {
            $0.connections.removeAll()
            $0.accepted = 0
            $0.http2Requests = 0
            $0.writeLateness = LatencyHistogram()
        }
    }

    public var pacedWriteLateness: LatencySummary { state.withLock { $0.writeLateness.summary } }

    func firstContent(_ token: String, at ns: UInt64) {
        state.withLock { $0.stamps[token]?.firstContentNs = ns }
    }

    func streamOpened() {
        state.withLock {
            $0.open += 1
            $0.peakOpen = max($0.peakOpen, $0.open)
        }
    }

    func streamClosed() { state.withLock { $0.open -= 1 } }

    public func stamp(_ token: String) -> ProviderStamp? { state.withLock { $0.stamps[token] } }

    public var openStreams: Int { state.withLock { $0.open } }
    public var requestCount: Int { state.withLock { $0.requests } }

    /// The most streams open at once since the last reset.
    public func resetPeak() { state.withLock { $0.peakOpen = $0.open } }
    public var peakOpenStreams: Int { state.withLock { $0.peakOpen } }

/// Drops the stamps of finished scenarios, so a long run does not keep them all.
    public func forget(_ tokens: some Sequence<String>) {
        state.withLock { for t in tokens { $0.stamps[t] = nil } }
    }
}

/// The bench's own provider: OpenAI streaming chat completions (a role chunk, N content
/// chunks at the scripted pace, a finish chunk, a usage chunk, `[DONE]`), each event its
/// own flushed write, stamping the request's arrival and the first content chunk on the
/// bench's monotonic clock. Content chunk i carries the text `Tk<i> `, which readers
/// look for to see the first token arrive.
public enum TimestampingProvider {
    public struct Running: Sendable {
        public let port: Int
        /// The HTTPS port, when started with a certificate.
        public let securePort: Int?
        public let ledger: ProviderLedger
        /// `http://127.0.0.1:PORT/v1`.
        public var baseURL: String { "http://127.0.0.1:\(port)/v1" }
        /// `https://127.0.0.1:SECURE_PORT/v1`, when started with a certificate.
        public var secureBaseURL: String? { securePort.map { "https://127.0.0.1:\($0)/v1" } }
    }

    /// Runs the provider on a free loopback port for the duration of `body`: plain
    /// HTTP/1.1, and with `tls` also HTTPS offering HTTP/2 (ALPN) on a second port. Both
    /// share the ledger.
    public static func withRunning<Result: Sendable>(
        logger: Logger, tls: MockCertificate? = nil, _ body: @Sendable (Running) async throws -> Result
    ) async throws -> Result {
        let ledger = ProviderLedger()
        let router = Router(context: ProviderContext.self)
        router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
        for path in ["/v1/chat/completions", "/chat/completions"] {
            router.post(RouterPath(path)) { request, context in try await respond(request, context: context, ledger: ledger) }
        }
        let (ports, portContinuation) = AsyncStream.makeStream(of: (secure: Bool, port: Int).self)
        func app(_ server: HTTPServerBuilder, secure: Bool) -> some Service {
            Application(
                router: router,
                server: server,
                configuration: ApplicationConfiguration(
                    address: .hostname("127.0.0.1", port: 0), serverName: "sluice-bench-provider", backlog: 4096,
                    availableConnectionsDelegate: AcceptedConnections(ledger: ledger, secure: secure)),
                onServerRunning: { channel in portContinuation.yield((secure, channel.localAddress?.port ?? 0)) },
                logger: logger
            )
        }
        var services: [any Service] = [app(.http1(), secure: false)]
        if let tls { services.append(app(try .http2Upgrade(tlsConfiguration: tls.serverConfiguration()), secure: true)) }
        var configuration = ServiceGroupConfiguration(services: services, logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(2)
        let group = ServiceGroup(configuration: configuration)
        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { tasks in
            tasks.addTask {
                defer { portContinuation.finish() }
                try await group.run()
            }
            var port: Int?
            var securePort: Int?
            for await listening in ports where listening.port > 0 {
                if listening.secure { securePort = listening.port } else { port = listening.port }
                if port != nil, (tls == nil) == (securePort == nil) { break }
            }
            guard let port, (tls == nil) == (securePort == nil) else {
                try await tasks.waitForAll()
                throw BenchError("the bench provider stopped before it listened")
            }
            let result: Swift.Result<Result, any Error>
            do {
                result = .success(try await body(Running(port: port, securePort: securePort, ledger: ledger)))
            } catch {
                result = .failure(error)
            }
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            return try result.get()
        }
    }

    private static func respond(_ request: Request, context: ProviderContext, ledger: ProviderLedger) async throws -> Response {
        let arrived = MonotonicClock.nanoseconds()
        let body = try await request.body.collect(upTo: 1 << 20)
        let script = BenchScript.find(in: body) ?? BenchScript(token: "unscripted-\(UUID().uuidString)", chunks: 1)
        ledger.received(script.token, at: arrived, on: context.connection, http2: context.isHTTP2)
        let id = "chatcmpl-" + script.token
        let created = Int(Date().timeIntervalSince1970)
        // Fields as OpenAI sends them, so a chunk is the size of a real one (~230 bytes).
        let prefix = #"{"id":"\#(id)","object":"chat.completion.chunk","created":\#(created),"model":"bench-1","service_tier":"default","system_fingerprint":"fp_bench00001","choices":["#
        @Sendable func event(_ json: String) -> ByteBuffer { ByteBuffer(string: "data: " + json + "\n\n") }

        let responseBody = ResponseBody { writer in
            ledger.streamOpened()
            defer { ledger.streamClosed() }
            try await writer.write(event(prefix + #"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}"#))
            // Chunks are due at fixed times from the start (not a sleep after each write),
            // so a stream's lateness is the pipeline's, not this provider's drift.
            let start = ContinuousClock.now
            ledger.scheduleStarted(script.token, at: MonotonicClock.nanoseconds())
            for index in 0..<script.chunks {
                let due = start + .milliseconds(script.firstDelayMs + index * script.paceMs)
                if due > .now { try await Task.sleep(until: due, clock: .continuous) }
                let chunk = event(prefix + #"{"index":0,"delta":{"content":"Tk\#(index) "},"logprobs":null,"finish_reason":null}]}"#)
                try await writer.write(chunk)
                if script.paceMs > 0 { ledger.wrotePacedChunk(lateBy: Int64((ContinuousClock.now - due) / .nanoseconds(1))) }
                // Stamped once the write is handed to the connection's channel, not before:
                // time this busy process takes to get to it is not the pipeline's. NIO
                // writes to the socket after this returns, so the figure stays an upper
                // bound of the true overhead.
                if index == 0 { ledger.firstContent(script.token, at: MonotonicClock.nanoseconds()) }
            }
            try await writer.write(event(prefix + #"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#))
            let usage = #"{"id":"\#(id)","object":"chat.completion.chunk","created":\#(created),"model":"bench-1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":\#(script.chunks),"total_tokens":\#(script.chunks + 12)}}"#
            try await writer.write(event(usage))
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: responseBody)
    }
}

/// Counts the connections the provider's HTTPS port accepts.
private struct AcceptedConnections: AvailableConnectionsDelegate {
    let ledger: ProviderLedger
    let secure: Bool
    func connectionOpened() { ledger.accepted(secure: secure) }
    func connectionClosed() {}
    func isAcceptingNewConnections() -> Bool { true }
}

public struct BenchError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
