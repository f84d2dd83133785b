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

    /// `{"job_id":"…"`, the start of every envelope of the job.
    private let envelopePrefix: [UInt8]
    /// Scratch for the envelope being written, reused across events.
    private var envelope: [UInt8] = []

    init(jobID: String, redis: RedisConnection, ttlSeconds: Int, lastSeq: Int) {
        self.jobID = jobID
        self.redis = redis
        self.ttlSeconds = ttlSeconds
        self.seq = lastSeq
        self.channel = Array(RedisKeys.channel(jobID).utf8)
        self.streamKey = Array(RedisKeys.events(jobID).utf8)
        self.envelopePrefix = EventEnvelope.prefix(jobID: jobID)
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

    /// Publishes an event whose `data` is already JSON. The per-chunk hot path: the
    /// envelope and both commands are written straight into one RESP buffer, queued as
    /// one unit, with no waiting.
    mutating func emit(_ event: EventName, data: [UInt8]) {
        seq += 1
        envelope.removeAll(keepingCapacity: true)
        EventEnvelope.write(prefix: envelopePrefix, seq: seq, event: event, data: data, ts: WallClock.now(), into: &envelope)
        let expire = seq == 1 || event == .chatFinished
        var out: [UInt8] = []
        out.reserveCapacity(2 * envelope.count + channel.count + 3 * streamKey.count + 112)
        RESPWriter.command(3, into: &out)
        RESPWriter.bulk("PUBLISH", into: &out)
        RESPWriter.bulk(channel, into: &out)
        RESPWriter.bulk(envelope, into: &out)
        RESPWriter.command(5, into: &out)
        RESPWriter.bulk("XADD", into: &out)
        RESPWriter.bulk(streamKey, into: &out)
        // The entry ID `0-seq`.
        out.append(UInt8(ascii: "$"))
        RESPWriter.decimal(2 + RESPWriter.decimalLength(seq), into: &out)
        out.append(contentsOf: "\r\n0-".utf8)
        RESPWriter.decimal(seq, into: &out)
        out.append(contentsOf: "\r\n".utf8)
        RESPWriter.bulk("e", into: &out)
        RESPWriter.bulk(envelope, into: &out)
        if expire {
            RESPWriter.command(3, into: &out)
            RESPWriter.bulk("EXPIRE", into: &out)
            RESPWriter.bulk(streamKey, into: &out)
            RESPWriter.bulk(ttlSeconds, into: &out)
        }
        redis.send(.formatted(out, commands: expire ? 3 : 2))
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
    static let set = Array("SET".utf8)
}
