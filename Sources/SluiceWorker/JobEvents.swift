import SluiceCore
import SluiceRedis

/// Publishes one job's events: each goes to the job's pub/sub channel and to its replay
/// stream in one pipelined write, with a gap-free `seq`.
///
/// The replay stream's entry IDs are `0-seq`, so a reader resuming after event N asks
/// for `XRANGE key 0-(N+1) +` and gets exactly what it missed. A redelivered job
/// continues the numbering of the run before it.
struct JobEvents {
    let jobID: String
    let redis: RedisConnection
    let ttlSeconds: Int
    private(set) var seq: Int
    private let channel: [UInt8]
    private let streamKey: [UInt8]

    init(jobID: String, redis: RedisConnection, ttlSeconds: Int, lastSeq: Int) {
        self.jobID = jobID
        self.redis = redis
        self.ttlSeconds = ttlSeconds
        self.seq = lastSeq
        self.channel = Array(RedisKeys.channel(jobID).utf8)
        self.streamKey = Array(RedisKeys.events(jobID).utf8)
    }

    /// The last `seq` already in the job's replay stream (0 if none or Redis is away).
    static func lastSeq(jobID: String, redis: RedisConnection) async -> Int {
        // While Redis is away, don't hold every job up for the command timeout: a job
        // that ran before is rare, and its events would be lost with Redis anyway.
        guard redis.isConnected else { return 0 }
        guard let reply = try? await redis.execute(RedisCommand("XREVRANGE", RedisKeys.events(jobID), "+", "-", "COUNT", "1")),
              let entry = reply.array?.first?.array?.first?.string,
              let dash = entry.firstIndex(of: "-"),
              let n = Int(entry[entry.index(after: dash)...])
        else { return 0 }
        return n
    }

    /// Publishes an event whose `data` is already JSON. The per-chunk hot path: one
    /// envelope, one pipelined batch, no waiting.
    mutating func emit(_ event: EventName, data: [UInt8]) {
        seq += 1
        let envelope = EventEnvelope.encode(jobID: jobID, seq: seq, event: event, data: data, ts: WallClock.now())
        let id = Array("0-\(seq)".utf8)
        var commands = [
            RedisCommand([RedisCommand.publish, channel, envelope]),
            RedisCommand([RedisCommand.xadd, streamKey, id, RedisCommand.eventField, envelope]),
        ]
        if seq == 1 || event == .chatFinished {
            commands.append(RedisCommand([RedisCommand.expire, streamKey, Array(String(ttlSeconds).utf8)]))
        }
        redis.send(commands)
    }

    mutating func emit(_ event: EventName, _ data: JSONValue) {
        emit(event, data: (try? JSON.encode(data)) ?? Array("null".utf8))
    }

    mutating func emit<T: Encodable>(_ event: EventName, encoding value: T) {
        emit(event, data: (try? JSON.encode(value)) ?? Array("null".utf8))
    }

    func storeResult(_ json: [UInt8]) {
        redis.send([RedisCommand([
            RedisCommand.set, Array(RedisKeys.result(jobID).utf8), json, Array("EX".utf8), Array(String(ttlSeconds).utf8),
        ])])
    }
}

extension RedisCommand {
    static let publish = Array("PUBLISH".utf8)
    static let xadd = Array("XADD".utf8)
    static let expire = Array("EXPIRE".utf8)
    static let set = Array("SET".utf8)
    /// The field of a replay-stream entry that holds the event envelope.
    static let eventField = Array("e".utf8)
}
