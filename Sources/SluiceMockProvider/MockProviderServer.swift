import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A deterministic LLM provider for tests, the demo and benchmarks: a real HTTP server
/// speaking OpenAI's chat completions wire format, with paced streaming and fault
/// injection (see ``MockBehavior`` for the knobs).
///
/// - `POST /v1/chat/completions`: a `chat.completion`, or with `"stream": true` a
///   `text/event-stream` of `chat.completion.chunk`s (role, content, finish, the usage
///   chunk only with `stream_options.include_usage`, then `[DONE]`), each flushed as it
///   is written. Output is a function of the request (see ``MockCompletion``).
/// - `GET /healthz`: 200.
///
/// Any `Authorization` is accepted and neither checked, logged nor stored. A `Service`:
/// run it in a `ServiceGroup`, or call `run()`.
public struct MockProviderServer: Service {
    public let stats: MockProviderStats
    private let host: String
    private let port: Int
    private let defaults: MockBehavior
    private let logger: Logger
    private let onServerRunning: @Sendable (_ port: Int) async -> Void

    /// - Parameters:
    ///   - port: 0 picks a free port; `onServerRunning` learns which.
    ///   - defaults: the behaviour of requests that set no knob.
    ///   - onServerRunning: called with the bound port once the server accepts connections.
    public init(
        host: String = "127.0.0.1",
        port: Int,
        defaults: MockBehavior = MockBehavior(),
        logger: Logger = Logger(label: "sluice.mock-provider"),
        onServerRunning: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) {
        self.stats = MockProviderStats()
        self.host = host
        self.port = port
        self.defaults = defaults
        self.logger = logger
        self.onServerRunning = onServerRunning
    }

    public func run() async throws {
        try await self.makeApplication().run()
    }

    func makeApplication() -> some ApplicationProtocol {
        let router = Router(context: BasicRequestContext.self)
        let provider = OpenAIMock(defaults: self.defaults, stats: self.stats)
        router.get("/healthz") { _, _ in HTTPResponse.Status.ok }
        router.post("/v1/chat/completions") { request, _ in
            try await provider.respond(to: request)
        }
        let onServerRunning = self.onServerRunning
        return Application(
            router: router,
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
        /// `http://127.0.0.1:PORT/v1`, the base URL of an OpenAI-compatible provider.
        public var baseURL: String { "http://127.0.0.1:\(self.port)/v1" }
    }

    /// Runs a server on a free loopback port for the duration of `body`, then shuts it
    /// down gracefully (responses still being paced are cut off).
    public static func withRunning<Result>(
        defaults: MockBehavior = MockBehavior(),
        logger: Logger = Logger(label: "sluice.mock-provider"),
        _ body: (Running) async throws -> Result
    ) async throws -> Result {
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let server = MockProviderServer(port: 0, defaults: defaults, logger: logger) { port in
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
                result = .success(try await body(Running(port: port, stats: server.stats)))
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

/// The `/v1/chat/completions` handler.
private struct OpenAIMock: Sendable {
    let defaults: MockBehavior
    let stats: MockProviderStats

    static let maxBodyBytes = 16 << 20

    func respond(to request: Request) async throws -> Response {
        self.stats.requestReceived()
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxBodyBytes)
        } catch {
            return Self.error(413, "request body larger than \(Self.maxBodyBytes) bytes", type: "invalid_request_error", code: nil)
        }
        let chat: ChatRequest
        do {
            chat = try JSONDecoder().decode(ChatRequest.self, from: Data(body.readableBytesView))
        } catch {
            return Self.error(400, "could not parse the JSON body of your request: \(error)", type: "invalid_request_error", code: nil)
        }
        guard !chat.messages.isEmpty else {
            return Self.error(400, "'messages' must contain at least one message", type: "invalid_request_error", code: nil)
        }
        let behavior: MockBehavior
        do {
            behavior = try self.defaults.applying(model: chat.model, headers: request.headers)
        } catch {
            return Self.error(400, "invalid value \"\(error.value)\" for mock knob \(error.knob)", type: "invalid_request_error", code: "invalid_mock_knob")
        }
        if let status = behavior.status, status != 200 {
            return Self.scriptedError(status, retryAfter: behavior.retryAfter)
        }

        let completion = MockCompletion(
            request: chat,
            body: body.readableBytesView,
            behavior: behavior,
            created: Int(Date().timeIntervalSince1970)
        )
        if chat.stream == true {
            return self.stream(completion, behavior)
        }
        return try await self.complete(completion, behavior)
    }

    /// A streaming response: each event is its own write, and each write is flushed.
    private func stream(_ completion: MockCompletion, _ behavior: MockBehavior) -> Response {
        let stats = self.stats
        let body = ResponseBody { writer in
            stats.streamStarted()
            var finished = false
            defer { stats.streamEnded(completed: finished) }
            try await writer.write(ByteBuffer(string: completion.roleEvent))
            for index in 0..<completion.pieces.count {
                if index == behavior.failAfterChunks {
                    finished = true
                    throw MockProviderError(message: "connection dropped after \(index) chunks (x-mock-fail-after-chunks)")
                }
                try await pace(index == 0 ? behavior.firstTokenDelay : behavior.chunkDelay)
                let event = index + 1 == behavior.malformedChunkAt ? completion.malformedEvent(index) : completion.contentEvent(index)
                try await writer.write(ByteBuffer(string: event))
            }
            if let failAfter = behavior.failAfterChunks, failAfter >= completion.pieces.count {
                finished = true
                throw MockProviderError(message: "connection dropped after \(completion.pieces.count) chunks (x-mock-fail-after-chunks)")
            }
            if !behavior.noFinish {
                var tail = completion.finishEvent
                if completion.includeUsage { tail += completion.usageEvent }
                tail += MockCompletion.doneEvent
                try await writer.write(ByteBuffer(string: tail))
            }
            try await writer.finish(nil)
            finished = true
        }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"],
            body: body
        )
    }

    /// A non-streaming response, sent once the stream would have finished.
    private func complete(_ completion: MockCompletion, _ behavior: MockBehavior) async throws -> Response {
        let count = completion.pieces.count
        let generation = behavior.firstTokenDelay + behavior.chunkDelay * max(count - 1, 0)
        try await pace(generation)

        let json = completion.completionJSON(finished: !behavior.noFinish)
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

    private static func scriptedError(_ status: Int, retryAfter: String?) -> Response {
        let (type, code, message): (String, String?, String) =
            switch status {
            case 400: ("invalid_request_error", nil, "Invalid request (scripted by x-mock-status).")
            case 401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (scripted by x-mock-status).")
            case 403: ("permission_denied", nil, "Permission denied (scripted by x-mock-status).")
            case 404: ("invalid_request_error", "model_not_found", "The model does not exist (scripted by x-mock-status).")
            case 429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (scripted by x-mock-status).")
            case 500..<600: ("server_error", nil, "The server had an error while processing your request (scripted by x-mock-status).")
            default: ("invalid_request_error", nil, "Scripted error status \(status).")
            }
        var response = Self.error(status, message, type: type, code: code)
        if let retryAfter { response.headers[.retryAfter] = retryAfter }
        return response
    }

    private static func error(_ status: Int, _ message: String, type: String, code: String?) -> Response {
        Response(
            status: HTTPResponse.Status(code: status),
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: openAIError(message: message, type: type, code: code)))
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
