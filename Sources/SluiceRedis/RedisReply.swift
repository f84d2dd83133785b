/// A reply from Redis (RESP2).
public enum RedisReply: Sendable, Equatable {
    /// A simple string, such as `OK` or `PONG`.
    case status(String)
    /// An error reply, such as `WRONGTYPE Operation against a key holding the wrong kind of value`.
    case error(String)
    case integer(Int64)
    /// A bulk string: binary-safe bytes.
    case bulk([UInt8])
    case array([RedisReply])
    /// A nil bulk string or nil array.
    case null

    /// The text of a status or bulk reply (bulk bytes decoded as UTF-8).
    public var string: String? {
        switch self {
        case .status(let text): text
        case .bulk(let bytes): String(decoding: bytes, as: UTF8.self)
        default: nil
        }
    }

    /// The bytes of a bulk or status reply.
    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let bytes): bytes
        case .status(let text): Array(text.utf8)
        default: nil
        }
    }

    /// The value of an integer reply, or of a bulk reply that holds a decimal integer
    /// (`GET` of a counter).
    public var int: Int64? {
        switch self {
        case .integer(let value): value
        case .bulk(let bytes): Int64(String(decoding: bytes, as: UTF8.self))
        default: nil
        }
    }

    /// The elements of an array reply.
    public var array: [RedisReply]? {
        if case .array(let elements) = self { elements } else { nil }
    }

    /// The message of an error reply.
    public var errorMessage: String? {
        if case .error(let message) = self { message } else { nil }
    }

    public var isNull: Bool { self == .null }
}
