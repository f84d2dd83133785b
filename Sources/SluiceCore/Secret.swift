/// A value that must never be printed: API keys from jobs or config.
/// Its descriptions are redacted, and it is not `Encodable`, so it cannot end up in an
/// event, a result or a DLQ record by accident.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public let value: String
    public init(_ value: String) { self.value = value }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}
