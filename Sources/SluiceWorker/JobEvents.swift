import SluiceCore
import SluiceRedis

/// Publishes one job's events: each goes to the job's pub/sub channel and to its replay
/// stream in one pipelined write, with a gap-free `seq`.
///
/// The replay stream's entry IDs are `0-seq`, so a reader resuming after event N asks
/// for `XRANGE key 0-(N+1) +` and gets exactly what it missed. A redelivered job
/// continues the numbering of the run before it.
///
/// The job's owner lives as long as its events: the first and the last event (and one
/// every quarter TTL in between) give the meta, which holds the owner, the same fresh TTL
/// as the replay stream.
struct JobEvents {
    let jobID: String
    let redis: RedisConnection
    let ttlSeconds: Int
    private(set) var seq: Int
    private let channel: [UInt8]
    private let streamKey: [UInt8]
    private let metaKey: [UInt8]
    private let tenant: [UInt8]

    /// `{"job_id":"…"`, the start of every envelope of the job.
    private let envelopePrefix: [UInt8]
    /// Scratch for the envelope being written, reused across events.
    private var envelope: [UInt8] = []
    /// When the TTLs were last refreshed (wall clock, seconds).
    private var refreshedAt = 0.0

    init(jobID: String, tenant: String, redis: RedisConnection, ttlSeconds: Int, lastSeq: Int) {
        self.jobID = jobID
        self.redis = redis
        self.ttlSeconds = ttlSeconds
        self.seq = lastSeq
        self.channel = Array(RedisKeys.channel(jobID).utf8)
        self.streamKey = Array(RedisKeys.events(jobID).utf8)
        self.metaKey = Array(RedisKeys.meta(jobID).utf8)
        self.tenant = Array(tenant.utf8)
        self.envelopePrefix = EventEnvelope.prefix(jobID: jobID)
    }

    /// Where a job's events stand when it starts.
    struct Opening {
        /// Whether the job's tenant owns its id; nil when Redis could not say.
        var claim: JobOwnership.Claim?
        /// The last `seq` already in the job's replay stream (0 if none).
        var lastSeq: Int
    }

    /// Claims the job's id for its tenant (a job produced straight to Kafka has no owner
    /// yet; one from the gateway was claimed there) and reads the last `seq` a run before
    /// this one published, in one round trip.
    static func open(jobID: String, tenant: String, redis: RedisConnection, ttlSeconds: Int) async -> Opening {
        // While Redis is away, don't hold every job up for the command timeout: the first
        // event claims the id when Redis is back (`HSETNX`).
        guard redis.isConnected else { return Opening(claim: nil, lastSeq: 0) }
        let claim = JobOwnership.claimArguments(jobID: jobID, tenant: tenant, ttlSeconds: ttlSeconds)
        guard let replies = try? await redis.execute([
            RedisCommand(claim.map { Array($0.utf8) }),
            RedisCommand("XREVRANGE", RedisKeys.events(jobID), "+", "-", "COUNT", "1"),
        ]), replies.count == 2 else { return Opening(claim: nil, lastSeq: 0) }
        var opening = Opening(claim: nil, lastSeq: 0)
        if let parts = replies[0].array, parts.count == 2, let claimed = parts[0].int {
            opening.claim = JobOwnership.Claim(claimed: claimed, owner: parts[1].string ?? "", tenant: tenant)
        }
        if let entry = replies[1].array?.first?.array?.first?.string, let dash = entry.firstIndex(of: "-"),
           let n = Int(entry[entry.index(after: dash)...]) {
            opening.lastSeq = n
        }
        return opening
    }

    /// Publishes an event whose `data` is already JSON. The per-chunk hot path: the
    /// envelope and both commands are written straight into one RESP buffer, queued as
    /// one unit, with no waiting.
    mutating func emit(_ event: EventName, data: [UInt8]) {
        seq += 1
        envelope.removeAll(keepingCapacity: true)
        let now = WallClock.now()
        EventEnvelope.write(prefix: envelopePrefix, seq: seq, event: event, data: data, ts: now, into: &envelope)
        // The first event, the last, and one every quarter TTL while a long job streams:
        // its owner and its events never expire while it runs.
        let expire = seq == 1 || event == .chatFinished || now - refreshedAt > Double(ttlSeconds) / 4
        if expire { refreshedAt = now }
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
            // The owner, if Redis was away when the job started, and its fresh TTL.
            RESPWriter.command(4, into: &out)
            RESPWriter.bulk("HSETNX", into: &out)
            RESPWriter.bulk(metaKey, into: &out)
            RESPWriter.bulk("tenant", into: &out)
            RESPWriter.bulk(tenant, into: &out)
            RESPWriter.command(3, into: &out)
            RESPWriter.bulk("EXPIRE", into: &out)
            RESPWriter.bulk(metaKey, into: &out)
            RESPWriter.bulk(ttlSeconds, into: &out)
        }
        redis.send(.formatted(out, commands: expire ? 5 : 2))
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
