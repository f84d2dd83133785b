import Foundation
import Logging
import SluiceCore
import SluiceHTTPClient
import SluiceKafka
import SluiceSupport
import Synchronization

/// A job's final result as the bench's results consumer saw it.
struct ResultRecord: Sendable {
    var arrivalNs: UInt64
    var status: String
    var latencySeconds: Double?
    var timeToFirstTokenSeconds: Double?
}

/// Results from `sluice.results`, by job id, filled by one consumer for the whole run.
final class ResultBoard: Sendable {
    private let results = Mutex<[String: ResultRecord]>([:])

    func add(_ id: String, _ record: ResultRecord) { results.withLock { $0[id] = record } }

    func records(_ ids: [String]) -> [String: ResultRecord] {
        results.withLock { results in
            var out: [String: ResultRecord] = [:]
            for id in ids { if let r = results[id] { out[id] = r } }
            return out
        }
    }

    func count(_ ids: [String]) -> Int { results.withLock { results in ids.reduce(0) { $0 + (results[$1] == nil ? 0 : 1) } } }

    func forget(_ ids: [String]) { results.withLock { results in for id in ids { results[id] = nil } } }
}

/// The bench's side of the pipeline: it produces jobs to Kafka, consumes results, and
/// reads streams over HTTP, all on the bench's clock.
final class PipelineClient: Sendable {
    let producer: KafkaProducer
    let consumer: KafkaConsumer
    let board = ResultBoard()
    let http: CurlClient
    let config: SluiceConfig
    let children: ChildProcessGroup

    init(config: SluiceConfig, children: ChildProcessGroup, logger: Logger) throws {
        self.config = config
        self.children = children
        self.producer = try KafkaProducer(brokers: config.kafka.brokers, properties: ["linger.ms": "1"], logger: logger)
        self.consumer = try KafkaConsumer(
            brokers: config.kafka.brokers, groupID: "sluice-bench-results-\(UUID().uuidString.prefix(8))",
            topics: [config.kafka.resultsTopic], properties: ["enable.auto.commit": "true", "fetch.wait.max.ms": "10"],
            logger: logger)
        // Up to 10,000 readers at once; below that libcurl would close and reopen
        // connections to the gateway, costing the machine the bench measures.
        self.http = CurlClient(logger: logger, maxConnections: 16_384)
    }

    /// Reads results until the consumer closes; run it as a task for the whole run.
    func consumeResults() async {
        let board = self.board
        for await message in consumer.messages {
            let now = MonotonicClock.nanoseconds()
            guard let value = try? JSON.decode(JSONValue.self, from: message.value),
                  let id = value["job_id"]?.stringValue ?? message.keyString else { continue }
            board.add(id, ResultRecord(
                arrivalNs: now, status: value["status"]?.stringValue ?? "unknown",
                latencySeconds: value["metrics"]?["latency_s"]?.doubleValue,
                timeToFirstTokenSeconds: value["metrics"]?["time_to_first_token_s"]?.doubleValue))
        }
    }

    func shutdown() {
        consumer.stopDelivering()
        consumer.close()
        producer.shutdown(timeoutMs: 2_000)
        http.shutdown()
    }

    static func jobJSON(id: String, script: BenchScript, model: String = BenchStack.model) -> [UInt8] {
        Array(#"{"id":"\#(id)","model":"\#(model)","messages":[{"role":"user","content":"\#(script.message)"}],"stream":true,"timeout_s":900}"#.utf8)
    }

    /// Produces one job; returns when the broker acknowledged it.
    func produce(id: String, script: BenchScript, model: String = BenchStack.model) async throws {
        try await producer.send(topic: config.kafka.requestsTopic, key: id, value: Self.jobJSON(id: id, script: script, model: model))
    }

    /// Produces jobs with up to `window` sends in flight; returns the time of the first send.
    @discardableResult
    func produceAll(_ jobs: [(id: String, script: BenchScript)], model: String = BenchStack.model, window: Int = 512,
                    onSent: @escaping @Sendable (Int) -> Void = { _ in }) async throws -> UInt64 {
        let start = MonotonicClock.nanoseconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, job) in jobs.enumerated() {
                if index >= window { try await group.next() }
                group.addTask {
                    try await self.produce(id: job.id, script: job.script, model: model)
                    onSent(index)
                }
            }
            try await group.waitForAll()
        }
        return start
    }

    /// Waits until every job has a result, a child dies, or `timeout` passes.
    func waitForResults(_ ids: [String], timeout: Duration) async throws -> [String: ResultRecord] {
        let deadline = ContinuousClock.now + timeout
        while board.count(ids) < ids.count {
            if let dead = children.deadChild() { throw BenchError("a process of the stack died: \(dead)") }
            guard ContinuousClock.now < deadline else {
                throw BenchError("only \(board.count(ids)) of \(ids.count) results arrived within \(timeout); see \(children.logDir.path)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return board.records(ids)
    }
}

/// What a stream reader saw.
struct StreamReading: Sendable {
    var status: Int
    /// When the bytes of the first content chunk (`Tk0 `) arrived.
    var firstTokenNs: UInt64?
    /// Occurrences of the counted pattern (one per relayed chunk).
    var counted: Int
    /// The whole stream, when asked to keep it.
    var text: String?
}

/// Counts a byte pattern across chunk boundaries: a KMP matcher whose state carries over
/// from one chunk to the next, so the bench's readers (a thousand at once, sharing the
/// machine with what they measure) scan each byte once and allocate nothing.
struct PatternCounter {
    let pattern: [UInt8]
    /// `fallback[i]`: the longest proper border of `pattern[0...i]`.
    private let fallback: [Int]
    /// Bytes of `pattern` matched at the end of what was fed so far.
    private var matched = 0

    init(_ pattern: String) {
        let p = Array(pattern.utf8)
        precondition(!p.isEmpty, "an empty pattern counts nothing")
        var fallback = [Int](repeating: 0, count: p.count)
        var k = 0
        for i in 1..<p.count {
            while k > 0, p[i] != p[k] { k = fallback[k - 1] }
            if p[i] == p[k] { k += 1 }
            fallback[i] = k
        }
        self.pattern = p
        self.fallback = fallback
    }

    mutating func feed(_ chunk: [UInt8]) -> Int {
        var count = 0
        var k = matched
        let last = pattern.count - 1
        pattern.withUnsafeBufferPointer { p in
            fallback.withUnsafeBufferPointer { f in
                for byte in chunk {
                    while k > 0, byte != p[k] { k = f[k - 1] }
                    if byte == p[k] {
                        if k == last {
                            count += 1
                            k = 0  // occurrences do not overlap, as before
                        } else {
                            k += 1
                        }
                    }
                }
            }
        }
        matched = k
        return count
    }
}

extension PipelineClient {
    /// Sends `request` and reads its stream to the end, noting when the first token arrived.
    func readStream(_ request: CurlRequest, counting pattern: String, keepText: Bool = false) async throws -> StreamReading {
        let response = try await http.execute(request)
        var marker = PatternCounter("Tk0 ")
        var counter = PatternCounter(pattern)
        var reading = StreamReading(status: response.status, firstTokenNs: nil, counted: 0, text: keepText ? "" : nil)
        for try await chunk in response.body {
            let now = MonotonicClock.nanoseconds()
            if reading.firstTokenNs == nil, marker.feed(chunk) > 0 { reading.firstTokenNs = now }
            reading.counted += counter.feed(chunk)
            if keepText { reading.text?.append(String(decoding: chunk, as: UTF8.self)) }
        }
        return reading
    }

    /// Follows a job's events from the gateway; the gateway knows a job once the worker
    /// started it (404 before), so a reader that comes early asks again every 10 ms, up to 30 s.
    func followEvents(gateway: String, jobID: String, keepText: Bool = false) async throws -> StreamReading {
        var reading = StreamReading(status: 0, firstTokenNs: nil, counted: 0, text: nil)
        for _ in 0..<3_000 {
            reading = try await readStream(Self.eventsRequest(gateway: gateway, jobID: jobID), counting: "event: chunk", keepText: keepText)
            guard reading.status == 404 else { return reading }
            try await Task.sleep(for: .milliseconds(10))
        }
        return reading
    }

    static func chatCompletionRequest(
        url: String, script: BenchScript, bearer: String = "sk-bench", totalTimeout: Duration = .seconds(600)
    ) -> CurlRequest {
        let body = #"{"model":"\#(BenchStack.model)","messages":[{"role":"user","content":"\#(script.message)"}],"stream":true}"#
        return CurlRequest(
            method: "POST", url: url, headers: ["content-type": "application/json", "authorization": "Bearer \(bearer)"],
            body: Array(body.utf8), connectTimeout: .seconds(30), idleTimeout: .seconds(120), totalTimeout: totalTimeout)
    }

    static func eventsRequest(gateway: String, jobID: String) -> CurlRequest {
        CurlRequest(method: "GET", url: "\(gateway)/v1/jobs/\(jobID)/events", headers: ["accept": "text/event-stream"],
                    connectTimeout: .seconds(30), idleTimeout: .seconds(120), totalTimeout: .seconds(600))
    }

    static func submitRequest(gateway: String, id: String, script: BenchScript) -> CurlRequest {
        CurlRequest(method: "POST", url: "\(gateway)/v1/jobs", headers: ["content-type": "application/json"],
                    body: jobJSON(id: id, script: script), connectTimeout: .seconds(30), totalTimeout: .seconds(60))
    }
}

/// Finds the index of each content chunk (`Tk<i> `) in a stream read piece by piece: the
/// state carries over from one piece to the next, so a chunk split across two reads is
/// still found once.
struct ChunkIndexScanner {
    private enum State { case text, sawT, digits }
    private var state = State.text
    private var value = 0
    private var digits = 0

    mutating func feed(_ bytes: [UInt8], found: (Int) -> Void) {
        for b in bytes {
            switch state {
            case .text:
                if b == UInt8(ascii: "T") { state = .sawT }
            case .sawT:
                if b == UInt8(ascii: "k") {
                    state = .digits
                    value = 0
                    digits = 0
                } else {
                    state = b == UInt8(ascii: "T") ? .sawT : .text
                }
            case .digits:
                if b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9"), digits < 18 {
                    value = value * 10 + Int(b - UInt8(ascii: "0"))
                    digits += 1
                } else {
                    if b == UInt8(ascii: " "), digits > 0 { found(value) }
                    state = b == UInt8(ascii: "T") ? .sawT : .text
                }
            }
        }
    }
}
