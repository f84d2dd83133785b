/// `host:port` as given to `--listen`, `gateway.listen` and `--metrics-listen`.
public struct HostPort: Sendable, Equatable {
    /// What stood before the last colon; empty for `:8080`.
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Splits at the last colon (`[::1]:80` keeps its brackets); nil unless a port from
    /// 0 to 65535 follows it.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"),
              let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port)
        else { return nil }
        self.host = String(text[..<colon])
        self.port = port
    }
}
