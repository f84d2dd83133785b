/// The lifecycle events of a job on Redis (docs/contract.md, Events), named after Smarter's signals.
public enum EventName: String, Sendable, CaseIterable, Codable {
    case chatStarted = "chat_started"
    case chatCompletionRequest = "chat_completion_request"
    case chunk
    case chatCompletionResponse = "chat_completion_response"
    case chatResponseFailure = "chat_response_failure"
    case chatFinished = "chat_finished"
}

/// The envelope `{"job_id", "seq", "event", "data", "ts"}` every event is sent in.
///
/// Encoding is done by hand: `data` arrives already serialised (a provider chunk's bytes
/// are relayed as they are), so the envelope is spliced around it instead of decoding and
/// re-encoding it on the per-chunk path.
public enum EventEnvelope {
    public static func encode(jobID: String, seq: Int, event: EventName, data: [UInt8], ts: Double) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + jobID.utf8.count + 96)
        write(prefix: prefix(jobID: jobID), seq: seq, event: event, data: data, ts: ts, into: &out)
        return out
    }

    /// `{"job_id":"…","run":"…"`: the start every event of a job's run shares, made once
    /// per run.
    public static func prefix(jobID: String, run: String? = nil) -> [UInt8] {
        var out = Array(#"{"job_id":"#.utf8)
        JSON.appendString(jobID, to: &out)
        if let run {
            out.append(contentsOf: #","run":"#.utf8)
            JSON.appendString(run, to: &out)
        }
        return out
    }

    /// Appends an envelope to `out`, with no intermediate strings: the per-chunk path.
    /// `ts` is written with microsecond precision.
    public static func write(prefix: [UInt8], seq: Int, event: EventName, data: [UInt8], ts: Double, into out: inout [UInt8]) {
        out.append(contentsOf: prefix)
        out.append(contentsOf: #","seq":"#.utf8)
        appendDecimal(seq, to: &out)
        out.append(contentsOf: #","event":""#.utf8)
        out.append(contentsOf: event.rawValue.utf8)
        out.append(contentsOf: #"","ts":"#.utf8)
        let micros = Int(saturating: (ts * 1_000_000).rounded())
        appendDecimal(micros / 1_000_000, to: &out)
        out.append(UInt8(ascii: "."))
        var fraction = micros % 1_000_000
        var divisor = 100_000
        for _ in 0..<6 {
            out.append(0x30 + UInt8(fraction / divisor))
            fraction %= divisor
            divisor /= 10
        }
        out.append(contentsOf: #","data":"#.utf8)
        out.append(contentsOf: data)
        out.append(UInt8(ascii: "}"))
    }

    /// The event's name: one of `EventName`'s own strings when it is one of them, so
    /// no string is made per relayed event.
    static func eventName(_ raw: UnsafeRawBufferPointer) -> String {
        for name in EventName.allCases where name.rawValue.utf8.elementsEqual(raw) { return name.rawValue }
        return String(decoding: raw, as: UTF8.self)
    }

    /// A non-negative integer in decimal, without making a string.
    static func appendDecimal(_ n: Int, to out: inout [UInt8]) {
        guard n >= 10 else {
            out.append(0x30 + UInt8(clamping: max(0, n)))
            return
        }
        appendDecimal(n / 10, to: &out)
        out.append(0x30 + UInt8(n % 10))
    }

    /// The fields a relay needs, located without decoding the whole event.
    public struct Peek: Sendable {
        public var seq: Int
        public var event: String
        /// Byte range of the `data` value within the envelope.
        public var data: Range<Int>
    }

    /// Reads `seq`, `event` and the range of `data` from an encoded envelope; nil if it
    /// is not one.
    public static func peek(_ bytes: [UInt8]) -> Peek? {
        // Per relayed chunk in the gateway: keys are compared as bytes, no strings made.
        var seq: Int?
        var event: String?
        var data: Range<Int>?
        let ok = bytes.withUnsafeBytes { buffer in
            JSONScanner.scanTopLevel(bytes, range: 0..<bytes.count) { key, value in
                let k = UnsafeRawBufferPointer(rebasing: buffer[key])
                if k.equals("seq") {
                    var n = 0
                    var digits = 0
                    for i in value {
                        let d = bytes[i] &- 0x30
                        guard d < 10, digits < 18 else { return false }
                        n = n * 10 + Int(d)
                        digits += 1
                    }
                    if digits > 0 { seq = n }
                } else if k.equals("event") {
                    if value.count >= 2 { event = eventName(UnsafeRawBufferPointer(rebasing: buffer[(value.lowerBound + 1)..<(value.upperBound - 1)])) }
                } else if k.equals("data") {
                    data = value
                }
                return true
            }
        }
        guard ok, let seq, let event, let data else { return nil }
        return Peek(seq: seq, event: event, data: data)
    }
}

/// A minimal, allocation-free scanner over a JSON object's top-level fields: what the
/// relays need to look at an envelope, a chunk or a result without decoding it.
public enum JSONScanner {
    /// Calls `body` with the byte ranges of each top-level key (without its quotes) and
    /// raw value of the object at `range` of `bytes`, until `body` returns false.
    /// Returns false if the bytes are not a well-formed object at the top level.
    @discardableResult
    public static func scanTopLevel(
        _ bytes: [UInt8], range: Range<Int>, _ body: (_ key: Range<Int>, _ value: Range<Int>) -> Bool
    ) -> Bool {
        // Per relayed event in the gateway. The cursor is a plain local passed to and
        // returned from static helpers over a buffer pointer: nested functions that
        // mutate a captured index cost a dynamic exclusivity check per byte.
        bytes.withUnsafeBufferPointer { buffer in
            var i = max(0, range.lowerBound)
            let n = min(range.upperBound, buffer.count)
            i = skipSpace(buffer, i, n)
            guard i < n, buffer[i] == UInt8(ascii: "{") else { return false }
            i = skipSpace(buffer, i + 1, n)
            if i < n, buffer[i] == UInt8(ascii: "}") { return true }
            while i < n {
                i = skipSpace(buffer, i, n)
                let keyStart = i
                guard let afterKey = skipString(buffer, i, n) else { return false }
                let key = (keyStart + 1)..<(afterKey - 1)
                i = skipSpace(buffer, afterKey, n)
                guard i < n, buffer[i] == UInt8(ascii: ":") else { return false }
                let valueStart = skipSpace(buffer, i + 1, n)
                guard let afterValue = skipValue(buffer, valueStart, n) else { return false }
                if !body(key, valueStart..<afterValue) { return true }
                i = skipSpace(buffer, afterValue, n)
                guard i < n else { return false }
                if buffer[i] == UInt8(ascii: ",") { i += 1; continue }
                if buffer[i] == UInt8(ascii: "}") { return true }
                return false
            }
            return false
        }
    }

    @inline(__always)
    private static func isSpace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09
    }

    /// The index of the first non-space byte at or after `i` (at most `n`).
    @inline(__always)
    private static func skipSpace(_ bytes: UnsafeBufferPointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        var i = i
        while i < n, isSpace(bytes[i]) { i += 1 }
        return i
    }

    /// The index just past the string starting at `i`; nil if there is none.
    private static func skipString(_ bytes: UnsafeBufferPointer<UInt8>, _ i: Int, _ n: Int) -> Int? {
        guard i < n, bytes[i] == UInt8(ascii: "\"") else { return nil }
        var i = i + 1
        while i < n {
            let b = bytes[i]
            if b == UInt8(ascii: "\\") { i += 2; continue }
            i += 1
            if b == UInt8(ascii: "\"") { return i }
        }
        return nil
    }

    /// The index just past the value starting at `i`; nil if there is none.
    private static func skipValue(_ bytes: UnsafeBufferPointer<UInt8>, _ i: Int, _ n: Int) -> Int? {
        guard i < n else { return nil }
        switch bytes[i] {
        case UInt8(ascii: "\""):
            return skipString(bytes, i, n)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var i = i
            var depth = 0
            while i < n {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    guard let next = skipString(bytes, i, n) else { return nil }
                    i = next
                    continue
                }
                if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") { depth += 1 }
                if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") {
                    depth -= 1
                    if depth == 0 { return i + 1 }
                }
                i += 1
            }
            return nil
        default:
            var j = i
            while j < n {
                let b = bytes[j]
                if b == UInt8(ascii: ",") || b == UInt8(ascii: "}") || b == UInt8(ascii: "]") || isSpace(b) { break }
                j += 1
            }
            return j > i ? j : nil
        }
    }

    /// Calls `body` with each top-level key (unescaped only if it has no escapes, which
    /// holds for every key Sluice looks for) and the byte range of its raw value.
    /// Returns false if `bytes` is not a well-formed object at the top level.
    @discardableResult
    public static func forEachTopLevelField(in bytes: [UInt8], _ body: (String, Range<Int>) -> Void) -> Bool {
        scanTopLevel(bytes, range: 0..<bytes.count) { key, value in
            body(String(decoding: bytes[key], as: UTF8.self), value)
            return true
        }
    }

    /// The byte range of the raw top-level value of `key` in the object at `range`; nil
    /// if absent or not an object. Compares key bytes: no string is made.
    public static func value(of key: StaticString, in bytes: [UInt8], range: Range<Int>) -> Range<Int>? {
        let wanted = UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        var found: Range<Int>?
        scanTopLevel(bytes, range: range) { k, v in
            if k.count == wanted.count, (0..<wanted.count).allSatisfy({ bytes[k.lowerBound + $0] == wanted[$0] }) {
                found = v
                return false
            }
            return true
        }
        return found
    }
}

/// Redis key names (docs/contract.md, Redis keys and channels).
public enum RedisKeys {
    public static func channel(_ jobID: String) -> String { "sluice:job:\(jobID)" }
    public static func events(_ jobID: String) -> String { "sluice:job:\(jobID):events" }
    public static func result(_ jobID: String) -> String { "sluice:job:\(jobID):result" }
    /// The job's owner (`tenant`) and what the gateway knows of it: written when the id is
    /// claimed (`JobOwnership`), by the gateway on submission or by the worker for a job
    /// produced straight to Kafka, and kept as long as the events and the result.
    public static func meta(_ jobID: String) -> String { "sluice:job:\(jobID):meta" }
    /// Held by the run of the job in progress (its run id), with a lease the run renews:
    /// one run at a time across workers.
    public static func run(_ jobID: String) -> String { "sluice:job:\(jobID):run" }
    /// A tenant's jobs in flight: a sorted set of job ids, scored by the time (seconds
    /// since the epoch) after which each stops counting. The gateway adds, the worker
    /// removes a job when it finishes.
    public static func tenantJobs(_ tenant: String) -> String { "sluice:tenant:\(tenant):jobs" }
    /// Set, with a short TTL, while someone follows the job (a reader of its events or
    /// of a streaming completion): a batch-lane job publishes its chunks only then
    /// (`worker.batch_chunk_events: followed`).
    public static func followed(_ jobID: String) -> String { "sluice:job:\(jobID):followed" }
}

/// The mark a follower keeps on a job (`RedisKeys.followed`), and how often each side
/// touches it: the gateway sets it when a reader subscribes and again every
/// `refreshEvery` while the reader stays; a worker reads it when an attempt starts and
/// then at most every `checkEvery` while the job streams, never once per chunk.
public enum FollowMark {
    public static let ttlMilliseconds = 5_000
    public static let refreshEvery: Duration = .seconds(2)
    /// Seconds.
    public static let checkEvery = 1.0
}

/// Who owns a job id. The first tenant to claim an id owns it until its keys expire; the
/// owner is the `tenant` field of the job's meta, set once and given the events' TTL, and
/// refreshed with them when the job ends. No owner means no job, for every tenant.
public enum JobOwnership {
    /// `EVAL claimScript 3 meta events result tenant ttl [field value]...`: claims the id for
    /// `tenant` unless it has an owner already, or has events or a result with no owner
    /// (left by a job whose owner is unknown, which nobody may take over). Answers
    /// `{1, tenant}` when claimed now, `{0, owner}` otherwise (`owner` empty for none).
    public static let claimScript = """
        local owner = redis.call('HGET', KEYS[1], 'tenant')
        if owner then return {0, owner} end
        if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then return {0, ''} end
        redis.call('HSET', KEYS[1], 'tenant', ARGV[1], unpack(ARGV, 3))
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        return {1, ARGV[1]}
        """

    /// The arguments of `EVAL` for claiming `jobID` for `tenant`.
    public static func claimArguments(jobID: String, tenant: String, ttlSeconds: Int, fields: [(String, String)] = []) -> [String] {
        var args = ["EVAL", claimScript, "3", RedisKeys.meta(jobID), RedisKeys.events(jobID), RedisKeys.result(jobID),
                    tenant, String(ttlSeconds)]
        for (name, value) in fields { args += [name, value] }
        return args
    }

    /// What a claim found.
    public enum Claim: Sendable, Equatable {
        /// The id was free and is now the tenant's.
        case claimed
        /// The tenant owned the id already: a resubmission of its own job.
        case ownedBySameTenant
        /// Another tenant owns the id, or its keys have no owner.
        case ownedByOther

        /// Reads the script's answer, `claimed` (1 or 0) and the owner.
        public init(claimed: Int64, owner: String, tenant: String) {
            if claimed == 1 { self = .claimed } else if owner == tenant { self = .ownedBySameTenant } else { self = .ownedByOther }
        }
    }
}
