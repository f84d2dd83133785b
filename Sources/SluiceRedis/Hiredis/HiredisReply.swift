internal import CHiredis

/// Owns one hiredis reply tree and frees it exactly once, when it goes out of scope.
struct HiredisReply: ~Copyable {
    private let reply: UnsafeMutablePointer<redisReply>

    init(_ reply: UnsafeMutablePointer<redisReply>) {
        self.reply = reply
    }

    deinit {
        freeReplyObject(reply)
    }

    /// The message of an error reply.
    var errorMessage: String? {
        reply.pointee.type == REDIS_REPLY_ERROR ? Self.text(reply) : nil
    }

    /// A Swift copy of the whole reply.
    var value: RedisReply { Self.convert(reply) }

    /// What a reply on a subscribed connection means.
    enum PubSub {
        case message(channel: String, payload: [UInt8])
        case subscribed(channel: String)
        case unsubscribed(channel: String)
        case other
    }

    var pubSub: PubSub {
        let top = reply.pointee
        guard top.type == REDIS_REPLY_ARRAY, top.elements == 3, let elements = top.element,
              let kind = elements[0], let channel = elements[1], let payload = elements[2],
              kind.pointee.type == REDIS_REPLY_STRING, channel.pointee.type == REDIS_REPLY_STRING
        else { return .other }
        let name = Self.text(channel)
        switch Self.text(kind) {
        case "message" where payload.pointee.type == REDIS_REPLY_STRING:
            return .message(channel: name, payload: Self.bytes(payload))
        case "subscribe":
            return .subscribed(channel: name)
        case "unsubscribe":
            return .unsubscribed(channel: name)
        default:
            return .other
        }
    }

    private static func bytes(_ reply: UnsafeMutablePointer<redisReply>) -> [UInt8] {
        guard let start = reply.pointee.str, reply.pointee.len > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: start, count: reply.pointee.len))
    }

    private static func text(_ reply: UnsafeMutablePointer<redisReply>) -> String {
        guard let start = reply.pointee.str, reply.pointee.len > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: start, count: reply.pointee.len), as: UTF8.self)
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RedisReply {
        switch reply.pointee.type {
        case REDIS_REPLY_STATUS:
            return .status(text(reply))
        case REDIS_REPLY_ERROR:
            return .error(text(reply))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.pointee.integer))
        case REDIS_REPLY_STRING:
            return .bulk(bytes(reply))
        case REDIS_REPLY_ARRAY:
            guard let elements = reply.pointee.element else { return .array([]) }
            return .array((0..<reply.pointee.elements).map { index in
                elements[index].map(convert) ?? .null
            })
        default:
            return .null
        }
    }
}
