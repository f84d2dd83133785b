import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdHTTP2
import Logging
import NIOCore
import ServiceLifecycle

/// A deterministic LLM provider for tests, the demo and benchmarks: a real HTTP server
/// speaking the OpenAI, Azure OpenAI, Anthropic and Gemini wire formats on one port, with
/// paced streaming and fault injection (see ``MockBehavior`` for the knobs, which work
/// the same in every format).
///
/// - `POST /v1/chat/completions` (also `/chat/completions`): OpenAI. A `chat.completion`,
///   or with `"stream": true` a `text/event-stream` of `chat.completion.chunk`s (role,
///   content or tool-call deltas, finish, the usage chunk only with
///   `stream_options.include_usage`, then `[DONE]`). Base URL `http://host:port/v1`.
/// - `POST /openai/deployments/{deployment}/chat/completions?api-version=...`: Azure
///   OpenAI (needs `api-version` and an `api-key` header; the deployment is the model).
///   Base URL `http://host:port`.
/// - `POST /v1/messages` (also `/v1/v1/messages`): Anthropic's Messages API, streaming
///   (`message_start` … `ping` … `message_stop`) or not. Needs `anthropic-version` and
///   `x-api-key` headers and `max_tokens`. Base URL `http://host:port` (or `…/v1`).
/// - `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` and
///   `…:generateContent` (also under `/v1/models/` and `/v1/v1beta/models/`): Gemini. Needs
///   an `x-goog-api-key` header (or `key` query item). Base URL `http://host:port`.
/// - `GET /healthz`: 200.
///
/// Plain HTTP/1.1 by default; given a ``MockCertificate``, HTTPS instead, with HTTP/2 for
/// clients that offer it in the TLS handshake (ALPN) and HTTP/1.1 for the others (base
/// URLs then start with `https://`).
///
/// Output is a function of the request (see ``MockCompletion``): the same words in every
/// format, or a tool call when the request offers tools and its last message is the
/// user's and mentions "weather". Keys are required where the real provider requires
/// them, but any non-empty key is accepted, and none is logged or stored. A `Service`:
/// run it in a `ServiceGroup`, or call `run()`.
public struct MockProviderServer: Service {
    public let stats: MockProviderStats
    private let host: String
    private let port: Int
    private let defaults: MockBehavior
    private let rateLimit: MockRateLimit?
    private let tls: MockCertificate?
    private let logger: Logger
    private let onServerRunning: @Sendable (_ port: Int) async -> Void

    /// - Parameters:
    ///   - port: 0 picks a free port; `onServerRunning` learns which.
    ///   - defaults: the behaviour of requests that set no knob.
    ///   - rateLimit: a requests-per-minute limit enforced per API key; nil for none.
    ///   - tls: serve HTTPS (and HTTP/2) with this certificate; nil for plain HTTP.
    ///   - onServerRunning: called with the bound port once the server accepts connections.
    public init(
        host: String = "127.0.0.1",
        port: Int,
        defaults: MockBehavior = MockBehavior(),
        rateLimit: MockRateLimit? = nil,
        tls: MockCertificate? = nil,
        logger: Logger = Logger(label: "sluice.mock-provider"),
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) {
        self.stats = MockProviderStats()
        self.host = host
        self.port = port
        self.defaults = defaults
        self.rateLimit = rateLimit
        self.tls = tls
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    public func run() async throws {
        try await self.makeApplication().run()
    }

    func makeApplication() throws -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        let provider = MockEndpoints(defaults: self.defaults, stats: self.stats, limiter: self.rateLimit.map(MockRateLimiter.init))
        router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
        for path in ["/v1/chat/completions", "/chat/completions"] {
            router.post(RouterPath(path)) { request, _ in try await provider.openAI(request) }
        }
        router.post("/openai/deployments/{deployment}/chat/completions") { request, context in
            try await provider.azure(request, deployment: context.parameters.get("deployment") ?? "")
        }
        for path in ["/v1/messages", "/v1/v1/messages"] {
            router.post(RouterPath(path)) { request, _ in try await provider.anthropic(request) }
        }
        for path in ["/v1beta/models/{target}", "/v1/models/{target}", "/v1/v1beta/models/{target}"] {
            router.post(RouterPath(path)) { request, context in
                try await provider.gemini(request, target: context.parameters.get("target") ?? "")
            }
        }
        let onServerRunning = self.onServerRunning
        return Application(
            router: router,
            server: try self.tls.map { try .http2Upgrade(tlsConfiguration: $0.serverConfiguration()) } ?? .http1(),
            configuration: ApplicationConfiguration(
                address: .hostname(self.host, port: self.port),
                serverName: "sluice-mock-provider",
                backlog: 1024,
                availableConnectionsDelegate: ConnectionCounter(stats: self.stats)
            ),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: self.logger
        )
    }
}

extension MockProviderServer {
    /// A server started by ``withRunning(defaults:logger:_:)``.
    public struct Running: Sendable {
        public let port: Int
        public let stats: MockProviderStats
        /// `http` or `https`.
        public let scheme: String
        /// `http://127.0.0.1:PORT/v1` (`https://` when serving TLS), the base URL of an
        /// OpenAI-compatible provider.
        public var baseURL: String { "\(self.scheme)://127.0.0.1:\(self.port)/v1" }
    }

    /// Runs a server on a free loopback port for the duration of `body`, then shuts it
    /// down gracefully (responses still being paced are cut off).
    public static func withRunning<Result>(
        defaults: MockBehavior = MockBehavior(),
        rateLimit: MockRateLimit? = nil,
        tls: MockCertificate? = nil,
        logger: Logger = Logger(label: "sluice.mock-provider"),
        _ body: (Running) async throws -> Result
    ) async throws -> Result {
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = MockProviderServer(port: 0, defaults: defaults, rateLimit: rateLimit, tls: tls, logger: logger) { port in
            portContinuation.yield(port)
            portContinuation.finish()
        }
        var configuration = ServiceGroupConfiguration(services: [server], logger: logger)
        configuration.maximumGracefulShutdownDuration = .seconds(2)
        let serviceGroup = ServiceGroup(configuration: configuration)

        return try await withThrowingTaskGroup(of: Void.self, returning: Result.self) { group in
            group.addTask {
                defer { portContinuation.finish() }
                try await serviceGroup.run()
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else {
                // The server stopped before it listened: surface its error.
                try await group.waitForAll()
                throw MockProviderError(message: "mock provider stopped before it started listening")
            }
            let result: Swift.Result<Result, any Error>
            do {
                result = .success(try await body(Running(port: port, stats: server.stats, scheme: tls == nil ? "http" : "https")))
            } catch {
                result = .failure(error)
            }
            await serviceGroup.triggerGracefulShutdown()
            try await group.waitForAll()
            return try result.get()
        }
    }
}

public struct MockProviderError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { self.message }
}

/// The handlers: each reads its format's request into a ``MockRequest``, then the same
/// completion, knobs and stream driver serve every format.
private struct MockEndpoints: Sendable {
    let defaults: MockBehavior
    let stats: MockProviderStats
    let limiter: MockRateLimiter?

    static let maxBodyBytes = 16 << 20

    func openAI(_ request: Request) async throws -> Response {
        try await self.serve(request, wire: .openAI) { body in
            let chat = try JSONDecoder().decode(ChatRequest.self, from: Data(body.readableBytesView))
            guard !chat.messages.isEmpty else { throw RequestError(message: "'messages' must contain at least one message") }
            return chat.mockRequest
        }
    }

    func azure(_ request: Request, deployment: String) async throws -> Response {
        guard request.uri.queryParameters["api-version"] != nil else {
            return Self.error(.azure, 404, "Resource not found")
        }
        guard request.headers[Self.azureKey].map({ !$0.isEmpty }) == true else {
            return Self.error(
                .azure, 401, "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
        }
        let deployment = deployment.removingPercentEncoding ?? deployment
        return try await self.serve(request, wire: .azure) { body in
            let chat = try JSONDecoder().decode(ChatRequest.self, from: Data(body.readableBytesView))
            guard !chat.messages.isEmpty else { throw RequestError(message: "'messages' must contain at least one message") }
            var mock = chat.mockRequest
            mock.model = deployment  // Azure serves the deployment, whatever the body says
            return mock
        }
    }

    func anthropic(_ request: Request) async throws -> Response {
        guard request.headers[Self.anthropicVersion] != nil else {
            return Self.error(.anthropic, 400, "anthropic-version: header is required")
        }
        guard request.headers[Self.anthropicKey].map({ !$0.isEmpty }) == true || request.headers[.authorization] != nil else {
            return Self.error(.anthropic, 401, "x-api-key header is required")
        }
        return try await self.serve(request, wire: .anthropic) { body in
            try JSONDecoder().decode(AnthropicRequest.self, from: Data(body.readableBytesView)).mockRequest()
        }
    }

    /// `target` is the path's last segment: `{model}:streamGenerateContent` or
    /// `{model}:generateContent`.
    func gemini(_ request: Request, target: String) async throws -> Response {
        let decoded = target.removingPercentEncoding ?? target
        guard let colon = decoded.lastIndex(of: ":") else {
            return Self.error(.gemini(sse: true), 404, "Method not found: give models/{model}:generateContent or :streamGenerateContent")
        }
        let model = String(decoded[..<colon])
        let stream: Bool
        switch decoded[decoded.index(after: colon)...] {
        case "streamGenerateContent": stream = true
        case "generateContent": stream = false
        default: return Self.error(.gemini(sse: true), 404, "Method not found: \(decoded[colon...])")
        }
        let sse = request.uri.queryParameters["alt"] == "sse"
        let keyed = request.headers[Self.googleKey].map { !$0.isEmpty } == true || request.uri.queryParameters["key"] != nil
        guard keyed else {
            return Self.error(.gemini(sse: sse), 403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.")
        }
        return try await self.serve(request, wire: .gemini(sse: sse)) { body in
            try JSONDecoder().decode(GeminiRequest.self, from: Data(body.readableBytesView)).mockRequest(model: model, stream: stream)
        }
    }

    private static let azureKey = HTTPField.Name("api-key")!
    private static let anthropicKey = HTTPField.Name("x-api-key")!
    private static let anthropicVersion = HTTPField.Name("anthropic-version")!
    private static let googleKey = HTTPField.Name("x-goog-api-key")!
    private static let traceparent = HTTPField.Name("traceparent")!

    /// Reads and parses the body, applies the knobs, and answers: a scripted error, a
    /// stream, or a whole response.
    private func serve(_ request: Request, wire: MockWire, parse: (ByteBuffer) throws -> MockRequest) async throws -> Response {
        self.stats.requestReceived(traceparent: request.headers[Self.traceparent])
        guard let limiter else { return try await self.answer(request, wire: wire, parse: parse) }
        let decision = limiter.take(key: MockRateLimiter.key(request))
        var response: Response
        if decision.allowed {
            response = try await self.answer(request, wire: wire, parse: parse)
        } else {
            self.stats.rateLimited()
            response = Self.error(wire, 429, "Rate limit reached for requests: limit \(limiter.limit.rpm) per minute. Please try again later.",
                                  code: "rate_limit_exceeded")
        }
        if !decision.allowed || limiter.limit.headersOnSuccess {
            for (name, value) in limiter.headers(decision) { response.headers[name] = value }
        }
        return response
    }

    private func answer(_ request: Request, wire: MockWire, parse: (ByteBuffer) throws -> MockRequest) async throws -> Response {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxBodyBytes)
        } catch {
            return Self.error(wire, 413, "request body larger than \(Self.maxBodyBytes) bytes")
        }
        let mock: MockRequest
        do {
            mock = try parse(body)
        } catch let error as RequestError {
            return Self.error(wire, 400, error.message)
        } catch {
            return Self.error(wire, 400, "could not parse the JSON body of your request: \(error)")
        }
        let behavior: MockBehavior
        do {
            behavior = try self.defaults.applying(model: mock.model, headers: request.headers)
        } catch {
            return Self.error(wire, 400, "invalid value \"\(error.value)\" for mock knob \(error.knob)", code: "invalid_mock_knob")
        }
        if let status = behavior.status, status != 200 {
            let (message, code) = wire.scriptedError(status)
            var response = Self.error(wire, status, message, code: code)
            if let retryAfter = behavior.retryAfter { response.headers[.retryAfter] = retryAfter }
            return response
        }

        let completion = MockCompletion(
            request: mock, body: body.readableBytesView, behavior: behavior, created: Int(Date().timeIntervalSince1970))
        let renderer = wire.renderer(completion)
        if mock.stream {
            return self.stream(renderer, behavior)
        }
        return try await self.complete(renderer, behavior)
    }

    /// A streaming response: each event is its own write, and each write is flushed.
    private func stream(_ renderer: any MockRenderer, _ behavior: MockBehavior) -> Response {
        let stats = self.stats
        let count = renderer.contentCount
        let body = ResponseBody { writer in
            stats.streamStarted()
            var finished = false
            defer { stats.streamEnded(completed: finished) }
            let head = renderer.head()
            if !head.isEmpty { try await writer.write(ByteBuffer(string: head)) }
            for index in 0..<count {
                if index == behavior.failAfterChunks {
                    finished = true
                    throw MockProviderError(message: "connection dropped after \(index) chunks (x-mock-fail-after-chunks)")
                }
                try await pace(index == 0 ? behavior.firstTokenDelay : behavior.chunkDelay)
                let event =
                    index + 1 == behavior.malformedChunkAt
                    ? renderer.malformed(index) : renderer.content(index, final: index == count - 1 && !behavior.noFinish)
                try await writer.write(ByteBuffer(string: event))
            }
            if let failAfter = behavior.failAfterChunks, failAfter >= count {
                finished = true
                throw MockProviderError(message: "connection dropped after \(count) chunks (x-mock-fail-after-chunks)")
            }
            if !behavior.noFinish {
                let tail = renderer.tail()
                if !tail.isEmpty { try await writer.write(ByteBuffer(string: tail)) }
            }
            try await writer.finish(nil)
            finished = true
        }
        return Response(
            status: .ok,
            headers: [.contentType: renderer.streamContentType, .cacheControl: "no-cache"],
            body: body
        )
    }

    /// A non-streaming response, sent once the stream would have finished.
    private func complete(_ renderer: any MockRenderer, _ behavior: MockBehavior) async throws -> Response {
        let count = renderer.contentCount
        let generation = behavior.firstTokenDelay + behavior.chunkDelay * max(count - 1, 0)
        try await pace(generation)

        let json = renderer.body(finished: !behavior.noFinish)
        let headers: HTTPFields = [.contentType: "application/json"]
        if behavior.failAfterChunks != nil {
            // Half the body, then the connection drops.
            let half = String(json.utf8.prefix(json.utf8.count / 2))!
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await writer.write(ByteBuffer(string: half))
                throw MockProviderError(message: "connection dropped mid-body (x-mock-fail-after-chunks)")
            })
        }
        if behavior.malformedChunkAt != nil {
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: String(json.utf8.prefix(json.utf8.count / 2))!)))
        }
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: json)))
    }

    private static func error(_ wire: MockWire, _ status: Int, _ message: String, code: String? = nil) -> Response {
        Response(
            status: HTTPResponse.Status(code: status),
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: wire.errorBody(status: status, message: message, code: code)))
        )
    }
}

/// Sleeps for `delay`, or throws once the server shuts down, so that slow scripted
/// responses never hold up a shutdown for long. Short pauses (chunk pacing) just sleep:
/// watching for shutdown costs a task group, too much per chunk.
private func pace(_ delay: Duration) async throws {
    if Task.isShuttingDownGracefully {
        throw MockProviderError(message: "mock provider shutting down")
    }
    if delay > .milliseconds(100) {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
    } else if delay > .zero {
        try await Task.sleep(for: delay)
    }
}
