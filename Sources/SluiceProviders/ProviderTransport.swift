import SluiceHTTPClient

/// What `ProviderRunner` needs of an HTTP client: send a request, get its status and
/// headers, then stream its body. `CurlClient` is the one the worker uses; tests give a
/// scripted one. `ProviderRunner` is generic over it, so the per-chunk path calls the
/// body's iterator directly, with no dynamic dispatch.
public protocol ProviderTransport: Sendable {
    associatedtype Body: ProviderResponseBody
    /// Sends `request`; returns once the status line and headers are in. Any status is a
    /// response; a failure to exchange HTTP messages throws ``HTTPClientError``.
    func send(_ request: CurlRequest) async throws -> ProviderResponse<Body>
}

/// A response body: byte chunks as they arrive. It throws ``HTTPClientError`` when the
/// transfer fails.
public protocol ProviderResponseBody: AsyncSequence<[UInt8], any Error>, Sendable {
    /// The whole body; throws `.bodyTooLarge` past `maxBytes`.
    func collect(upTo maxBytes: Int) async throws -> [UInt8]
    /// Stops the transfer from any task: the reader gets `error`.
    func abort(with error: HTTPClientError)
    /// Hands each chunk to `consumer` as it arrives and returns at the end (see
    /// ``HTTPResponseBody/consume(_:whenPaused:)``: `CurlClient` runs the consumer on its
    /// own thread, with no task woken per chunk). By default the body is iterated and
    /// the consumer called on the calling task.
    func consume(_ consumer: some HTTPBodyConsumer, whenPaused: () async -> Void) async throws
}

extension ProviderResponseBody {
    public func consume(_ consumer: some HTTPBodyConsumer, whenPaused: () async -> Void) async throws {
        for try await bytes in self {
            switch bytes.withUnsafeBytes({ consumer.receive($0) }) {
            case .proceed: break
            case .pause: await whenPaused()
            case .stop: throw HTTPClientError(.transfer, "the response body's consumer stopped the transfer")
            }
        }
    }
}

/// A response whose status and headers are in, its body streaming behind it.
public struct ProviderResponse<Body: ProviderResponseBody>: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: Body

    public init(status: Int, headers: HTTPHeaders, body: Body) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

extension HTTPResponseBody: ProviderResponseBody {}

extension CurlClient: ProviderTransport {
    public func send(_ request: CurlRequest) async throws -> ProviderResponse<HTTPResponseBody> {
        let response = try await execute(request)
        return ProviderResponse(status: response.status, headers: response.headers, body: response.body)
    }
}
