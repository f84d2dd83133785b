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

    init?(_ url: String) {
        guard let schemeEnd = url.firstRange(of: "://") else { return nil }
        self.scheme = url[..<schemeEnd.lowerBound]
        guard self.scheme.equalsCaseInsensitively("http") || self.scheme.equalsCaseInsensitively("https") else {
            return nil
        }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex { (c: Character) in c == "/" || c == "?" || c == "#" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        if let at = authority.lastIndex(of: "@") {
            authority = authority[authority.index(after: at)...]
        }
        guard !authority.isEmpty else { return nil }
        self.authority = authority
        let afterAuthority = rest[authorityEnd...]
        self.path = afterAuthority.prefix { (c: Character) in c != "?" && c != "#" }
    }

    var redacted: String { "\(self.scheme)://\(self.authority)\(self.path)" }
}

extension Substring {
    func equalsCaseInsensitively(_ other: String) -> Bool {
        String(self).equalsCaseInsensitively(other)
    }
}
