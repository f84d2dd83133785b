/// One HTTP request for ``CurlClient/execute(_:)``.
///
/// Printing a request shows its method, scheme, host and path only: headers carry API
/// keys and some providers put keys in the query string.
public struct CurlRequest: Sendable {
    public var method: String
    /// An absolute `http://` or `https://` URL.
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Longest time to establish the connection (name resolution and TLS included).
    public var connectTimeout: Duration
    /// Longest silence allowed once the connection is up: no byte received for this long
    /// fails the transfer with ``HTTPClientError/Code/idleTimeout``. Measured with
    /// millisecond precision; time the body spends paused because its reader is slow
    /// does not count.
    public var idleTimeout: Duration?
    /// Longest time for the whole exchange, from submission to the last body byte.
    public var totalTimeout: Duration?
    /// A PEM file of the CA certificates that may sign the server's certificate, in place
    /// of the system's bundle (a private CA, a self-signed test server). The certificate
    /// and its host name are verified either way; nil uses the system's bundle.
    public var caFile: String?

    public init(
        method: String = "POST",
        url: String,
        headers: HTTPHeaders = [:],
        body: [UInt8] = [],
        connectTimeout: Duration = .seconds(10),
        idleTimeout: Duration? = nil,
        totalTimeout: Duration? = nil,
        caFile: String? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.totalTimeout = totalTimeout
        self.caFile = caFile
    }
}

extension CurlRequest: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "\(self.method) \(URLParts(self.url)?.redacted ?? "<invalid url>") (\(self.headers.count) headers, \(self.body.count) body bytes)"
    }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: ["description": self.description]) }
}

/// The pieces of an absolute http(s) URL that are safe to show: no user info, no query.
struct URLParts {
    var scheme: Substring
    /// `host` or `host:port`, without user info.
    var authority: Substring
    var path: Substring

    /// Read over the URL's UTF-8 bytes: the delimiters are ASCII, and this runs once per
    /// request (`Character` searches cost a few microseconds each on the job's path).
    init?(_ url: String) {
        let bytes = url.utf8
        // The scheme ends at the first colon; a scheme with a colon in it is neither
        // http nor https anyway.
        guard let schemeEnd = bytes.firstIndex(of: UInt8(ascii: ":")), bytes[schemeEnd...].starts(with: "://".utf8) else {
            return nil
        }
        self.scheme = url[..<schemeEnd]
        guard self.scheme.equalsCaseInsensitively("http") || self.scheme.equalsCaseInsensitively("https") else {
            return nil
        }
        let authorityStart = bytes.index(schemeEnd, offsetBy: 3)
        let rest = bytes[authorityStart...]
        let authorityEnd = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
            ?? rest.endIndex
        var hostStart = authorityStart
        if let at = bytes[authorityStart..<authorityEnd].lastIndex(of: UInt8(ascii: "@")) {
            hostStart = bytes.index(after: at)
        }
        guard hostStart < authorityEnd else { return nil }
        self.authority = url[hostStart..<authorityEnd]
        let pathEnd = bytes[authorityEnd...].firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? bytes.endIndex
        self.path = url[authorityEnd..<pathEnd]
    }

    var redacted: String { "\(self.scheme)://\(self.authority)\(self.path)" }
}

extension Substring {
    func equalsCaseInsensitively(_ other: String) -> Bool {
        String(self).equalsCaseInsensitively(other)
    }
}
