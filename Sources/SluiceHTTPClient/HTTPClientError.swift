/// Why an HTTP exchange failed.
///
/// The message names the host and quotes libcurl's own explanation; it never contains
/// request headers, the body, user info or the query string, so it is safe to log and to
/// put in a job's result.
public struct HTTPClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Kind: String, Sendable {
            case connect, tlsVerification, idleTimeout, totalTimeout, transfer, cancelled, invalidRequest, bodyTooLarge, shutdown
        }
        private let kind: Kind
        private init(_ kind: Kind) { self.kind = kind }

        /// Name resolution, TCP connect, TLS handshake or the connect timeout failed: no
        /// byte of the request reached the server.
        public static let connect = Code(.connect)
        /// The server's TLS certificate was not trusted (it is not signed by a CA of the
        /// bundle in use, or names another host), or the CA bundle given as
        /// ``CurlRequest/caFile`` could not be read: no byte of the request was sent.
        public static let tlsVerification = Code(.tlsVerification)
        /// No byte arrived for ``CurlRequest/idleTimeout``.
        public static let idleTimeout = Code(.idleTimeout)
        /// The exchange took longer than ``CurlRequest/totalTimeout``.
        public static let totalTimeout = Code(.totalTimeout)
        /// The connection failed after it was established (reset, closed early, malformed
        /// response).
        public static let transfer = Code(.transfer)
        /// The caller cancelled: its task was cancelled or it dropped the response body.
        public static let cancelled = Code(.cancelled)
        /// The request could not be sent as given (bad URL, method or header).
        public static let invalidRequest = Code(.invalidRequest)
        /// ``HTTPResponseBody/collect(upTo:)`` met more bytes than allowed.
        public static let bodyTooLarge = Code(.bodyTooLarge)
        /// The client was shut down before or during the exchange.
        public static let shutdown = Code(.shutdown)

        public var description: String { self.kind.rawValue }
    }

    public let code: Code
    public let message: String
    /// libcurl's `CURLcode`, where the error came from libcurl.
    public let curlCode: Int?

    public init(_ code: Code, _ message: String, curlCode: Int? = nil) {
        self.code = code
        self.message = message
        self.curlCode = curlCode
    }

    public var description: String { "\(self.code): \(self.message)" }

    /// Whether the failure was a timeout of any kind (connect timeouts are `.connect`).
    public var isTimeout: Bool { self.code == .idleTimeout || self.code == .totalTimeout }
}
