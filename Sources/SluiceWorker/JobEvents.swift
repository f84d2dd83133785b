import SluiceCore
import SluiceRedis

/// Publishes one job's events: each goes to the job's pub/sub channel and to its replay
/// stream in one pipelined write, with a gap-free `seq`.
///
/// The replay stream's entry IDs are `0-seq`, so a reader resuming after event N asks
/// for `XRANGE key 0-(N+1) +` and gets exactly what it missed. Every envelope names its
/// run. A redelivered job continues the numbering of the run before it, and its first
/// event replaces the replay stream: what a cut-off run published is not replayed mixed
/// with the run that took over.
///
/// The job's owner lives as long as its events: the first and the last event (and one
/// every quarter TTL in between) give the meta, which holds the owner, the same fresh TTL
/// as the replay stream.
struct JobEvents<Redis: RedisCommandSink> {
    let jobID: String
    let run: String
    let redis: Redis
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
    /// A run before this one published events: the first emit deletes them.
    private var replacesEarlierRun: Bool
    private var emittedAny = false
    /// When the TTLs were last refreshed (wall clock, seconds).
    private var refreshedAt = 0.0

    @inline(never)
    init(jobID: String, run: String, tenant: String, redis: Redis, ttlSeconds: Int, lastSeq: Int) {
        self.jobID = jobID
        self.run = run
        self.replacesEarlierRun = lastSeq > 0
        self.redis = redis
        self.ttlSeconds = ttlSeconds
        self.seq = lastSeq
        self.channel = Array(RedisKeys.channel(jobID).utf8)
        self.streamKey = Array(RedisKeys.events(jobID).utf8)
        self.metaKey = Array(RedisKeys.meta(jobID).utf8)
        self.tenant = Array(tenant.utf8)
        self.envelopePrefix = EventEnvelope.prefix(jobID: jobID, run: run)
    }

    /// Publishes an event whose `data` is already JSON. The per-chunk hot path: the
    /// envelope and both commands are written straight into one RESP buffer, queued as
    /// one unit, with no waiting. Answers false when Redis cannot keep up: the caller
    /// awaits `redis.waitForRoom()` before the next event. `chat_finished` is pinned: it
    /// is never dropped, even while Redis is away.
    @discardableResult
    mutating func emit(_ event: EventName, data: [UInt8]) -> Bool {
        redis.send(command(event, data: data))
    }

    /// The next event as the one RESP command `emit` queues (`seq` advances): all of an
    /// event's work but the queueing, which the allocation test and the micro-benchmarks
    /// measure through `ChunkPath`.
    mutating func command(_ event: EventName, data: [UInt8]) -> RedisCommand {
        seq += 1
        envelope.removeAll(keepingCapacity: true)
        let now = WallClock.now()
        EventEnvelope.write(prefix: envelopePrefix, seq: seq, event: event, data: data, ts: now, into: &envelope)
        // The first event of the run sets the stream's TTL (a run cut off leaves nothing
        // behind forever); chat_finished starts it again from the end; and one every
        // quarter TTL while a long job streams, so that its owner and its events never
        // expire while it runs.
        let expire = !emittedAny || event == .chatFinished || now - refreshedAt > Double(ttlSeconds) / 4
        emittedAny = true
        if expire { refreshedAt = now }
        var out: [UInt8] = []
        out.reserveCapacity(2 * envelope.count + channel.count + 4 * streamKey.count + 128)
        var commands = expire ? 5 : 2
        if replacesEarlierRun {
            replacesEarlierRun = false
            RESPWriter.command(2, into: &out)
            RESPWriter.bulk("DEL", into: &out)
            RESPWriter.bulk(streamKey, into: &out)
            commands += 1
        }
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
        if event == .chatFinished {
            // The job no longer counts among its tenant's jobs in flight.
            RESPWriter.command(3, into: &out)
            RESPWriter.bulk("ZREM", into: &out)
            RESPWriter.bulk(Array(RedisKeys.tenantJobs(String(decoding: tenant, as: UTF8.self)).utf8), into: &out)
            RESPWriter.bulk(Array(jobID.utf8), into: &out)
            commands += 1
        }
        var command = RedisCommand.formatted(out, commands: commands)
        command.isPinned = event == .chatFinished
        return command
    }

    @discardableResult @inline(never)
    mutating func emit(_ event: EventName, _ data: JSONValue) -> Bool {
        emit(event, data: (try? JSON.encode(data)) ?? Array("null".utf8))
    }

    @discardableResult @inline(never)
    mutating func emit<T: Encodable>(_ event: EventName, encoding value: T) -> Bool {
        emit(event, data: (try? JSON.encode(value)) ?? Array("null".utf8))
    }

    /// Compacts the job's replay stream once it finished (`ReplayCompaction`): its chunk
    /// events go, its lifecycle events stay with their ids. Queued after `chat_finished`
    /// on the same connection, so it runs after every event of the run; it leaves the
    /// stream alone if another run holds the job.
    func compactReplay() {
        redis.send(RedisCommand(script: JobEventScripts.compact, evalArguments: ReplayCompaction.arguments(jobID: jobID, run: run)))
    }

    /// Stores the final result and adds the job to its tenant's usage of the day
    /// (`TenantUsage.recordScript`, once per job), queued together with no wait for an
    /// answer; both pinned: never dropped while Redis is away.
    @inline(never)
    func storeResult(_ json: [UInt8], response: UnifiedResponse, finishedAt: Double) {
        var command = RedisCommand([
            RedisCommand.set, Array(RedisKeys.result(jobID).utf8), json, Array("EX".utf8), Array(String(ttlSeconds).utf8),
        ])
        command.isPinned = true
        let tenant = String(decoding: self.tenant, as: UTF8.self)
        var usage = RedisCommand(script: JobEventScripts.recordUsage, evalArguments: TenantUsage.recordArguments(
            jobID: jobID, tenant: tenant, day: UsageDay(unixSeconds: finishedAt), response: response))
        usage.isPinned = true
        redis.send([command, usage])
    }
}

/// The scripts a job's end runs, by their SHA1 (a generic type has no stored statics).
enum JobEventScripts {
    static let compact = RedisScript(ReplayCompaction.compactScript)
    static let recordUsage = RedisScript(TenantUsage.recordScript)
}

extension RedisCommand {
    static let set = Array("SET".utf8)
}
