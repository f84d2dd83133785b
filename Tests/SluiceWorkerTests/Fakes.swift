import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceKafka
import SluiceProviders
@testable import SluiceRedis
@testable import SluiceWorker
import Synchronization

/// A provider that answers from a script, one reply per request, in order; what it was
/// asked is kept. Running out of script is a test bug: it answers 599.
final class ScriptedProvider: ProviderTransport {
    enum Reply {
        /// An error status (or a non-streaming body) with its headers.
        case status(Int, headers: [(String, String)] = [], body: String = "")
        /// A 200 event stream of these SSE chunks, then `failure` (nil: the stream ends).
        case stream([String], failure: HTTPClientError? = nil)
        /// No connection at all.
        case connectionRefused
    }

    private let script: Mutex<[Reply]>
    private let asked = Mutex<[CurlRequest]>([])

    init(_ replies: [Reply]) { script = Mutex(replies) }

    /// The model of each request, in the order they came.
    var models: [String] {
        asked.withLock { $0 }.map { (try? JSON.decode(JSONValue.self, from: $0.body))?["model"]?.stringValue ?? "?" }
    }

    func send(_ request: CurlRequest) async throws -> ProviderResponse<ScriptedBody> {
        asked.withLock { $0.append(request) }
        let reply = script.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        switch reply {
        case .status(let status, let headers, let body):
            return ProviderResponse(status: status, headers: HTTPHeaders(headers), body: ScriptedBody(chunks: [Array(body.utf8)]))
        case .stream(let chunks, let failure):
            return ProviderResponse(status: 200, headers: ["content-type": "text/event-stream"],
                                    body: ScriptedBody(chunks: chunks.map { Array($0.utf8) }, failure: failure))
        case .connectionRefused:
            throw HTTPClientError(.connect, "connection refused by the script")
        case nil:
            return ProviderResponse(status: 599, headers: [:], body: ScriptedBody(chunks: [Array("script ran out".utf8)]))
        }
    }

    /// An OpenAI stream chunk carrying `content`, or finishing with `finish`.
    static func chunk(_ content: String? = nil, finish: String? = nil) -> String {
        let delta = content.map { #"{"content":"\#($0)"}"# } ?? "{}"
        let reason = finish.map { #""\#($0)""# } ?? "null"
        return #"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":\#(delta),"finish_reason":\#(reason)}]}"# + "\n\n"
    }

    /// A whole successful stream: "Hello", then the end.
    static let hello: Reply = .stream([chunk("Hello"), chunk(finish: "stop"), "data: [DONE]\n\n"])
}

/// A scripted response body: its chunks, then its failure or its end.
struct ScriptedBody: ProviderResponseBody {
    typealias Element = [UInt8]
    var chunks: [[UInt8]]
    var failure: HTTPClientError?

    func makeAsyncIterator() -> Iterator { Iterator(chunks: chunks[...], failure: failure) }

    struct Iterator: AsyncIteratorProtocol {
        var chunks: ArraySlice<[UInt8]>
        var failure: HTTPClientError?
        mutating func next() async throws -> [UInt8]? {
            if let chunk = chunks.popFirst() { return chunk }
            if let failure {
                self.failure = nil
                throw failure
            }
            return nil
        }
    }

    func collect(upTo maxBytes: Int) async throws -> [UInt8] {
        var all: [UInt8] = []
        for try await chunk in self { all += chunk }
        guard all.count <= maxBytes else { throw HTTPClientError(.bodyTooLarge, "over \(maxBytes)") }
        return all
    }

    func abort(with error: HTTPClientError) {}
}

/// Redis as a job's run sees it, away: every command is kept (events decoded from them),
/// no round trip answers, so the rate limiter admits locally.
///
/// With `fullUntilWaits`, it answers that it cannot keep up until the run has waited for
/// room that many times (every command is kept all the same).
final class RecordingRedis: RedisCommandSink {
    private let sent = Mutex<[RedisCommand]>([])
    private let fullUntilWaits: Int
    private let waits = Mutex(0)

    init(fullUntilWaits: Int = 0) { self.fullUntilWaits = fullUntilWaits }

    /// How often the run waited for room.
    var waitsForRoom: Int { waits.withLock { $0 } }

    @discardableResult func send(_ command: RedisCommand) -> Bool {
        sent.withLock { $0.append(command) }
        return waitsForRoom >= fullUntilWaits
    }

    @discardableResult func send(_ commands: [RedisCommand]) -> Bool {
        sent.withLock { $0 += commands }
        return waitsForRoom >= fullUntilWaits
    }

    func waitForRoom() async { waits.withLock { $0 += 1 } }

    func execute(_ command: RedisCommand) async throws -> RedisReply {
        throw RedisError(.unavailable, "the recording Redis answers nothing")
    }

    var isConnected: Bool { false }

    /// The events published on the job's channel, in order: `{"event", "seq", "data", ...}`.
    var events: [JSONValue] {
        sent.withLock { $0 }.flatMap { RecordingRedis.arrays(in: $0.bytes) }
            .filter { $0.first == Array("PUBLISH".utf8) && $0.count == 3 }
            .compactMap { try? JSON.decode(JSONValue.self, from: $0[2]) }
    }

    func events(_ name: EventName) -> [JSONValue] {
        events.filter { $0["event"]?.stringValue == name.rawValue }
    }

    /// The RESP arrays of bulk strings in `bytes` (one command or several formatted ones).
    static func arrays(in bytes: [UInt8]) -> [[[UInt8]]] {
        var out: [[[UInt8]]] = []
        var i = 0
        func number() -> Int {
            var n = 0
            while bytes[i] != UInt8(ascii: "\r") {
                n = n * 10 + Int(bytes[i] - UInt8(ascii: "0"))
                i += 1
            }
            i += 2
            return n
        }
        while i < bytes.count, bytes[i] == UInt8(ascii: "*") {
            i += 1
            var args: [[UInt8]] = []
            for _ in 0..<number() {
                i += 1  // "$"
                let length = number()
                args.append(Array(bytes[i..<i + length]))
                i += length + 2
            }
            out.append(args)
        }
        return out
    }
}

/// A producer whose acknowledgements the test hands out: each `send` waits until the
/// test answers it with `acknowledge()` or `fail(_:)`.
final class HeldProducer: RecordProducer {
    private struct State {
        var held: [CheckedContinuation<Void, any Error>] = []
        var records: [(topic: String, value: [UInt8])] = []
        /// Tests waiting for the n-th record: (n, continuation).
        var watchers: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    func send(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let due = state.withLock { s in
                s.held.append(continuation)
                s.records.append((topic, value))
                let count = s.records.count
                let due = s.watchers.filter { $0.0 <= count }.map(\.1)
                s.watchers.removeAll { $0.0 <= count }
                return due
            }
            for watcher in due { watcher.resume() }
        }
    }

    /// Returns once `count` records have been sent (each held until answered).
    func waitForRecords(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s in
                if s.records.count >= count { return true }
                s.watchers.append((count, continuation))
                return false
            }
            if now { continuation.resume() }
        }
    }

    var records: [(topic: String, value: [UInt8])] { state.withLock { $0.records } }

    /// Acknowledges the oldest record still held.
    func acknowledge() { state.withLock { $0.held.removeFirst() }.resume() }
    /// Fails the oldest record still held with `error`.
    func fail(_ error: any Error) { state.withLock { $0.held.removeFirst() }.resume(throwing: error) }
}

/// Redis connected, answering every round trip with 0 (the rate limiter's "admitted
/// now"): what was sent and what was asked are kept.
final class AdmittingRedis: RedisCommandSink {
    let sent = Mutex<[RedisCommand]>([])
    let asked = Mutex<[RedisCommand]>([])

    @discardableResult func send(_ command: RedisCommand) -> Bool {
        sent.withLock { $0.append(command) }
        return true
    }

    @discardableResult func send(_ commands: [RedisCommand]) -> Bool {
        sent.withLock { $0 += commands }
        return true
    }

    func waitForRoom() async {}

    func execute(_ command: RedisCommand) async throws -> RedisReply {
        asked.withLock { $0.append(command) }
        return .integer(0)
    }

    var isConnected: Bool { true }

    /// The scripts of the commands sent and asked, in order.
    var scripts: (sent: [RedisScript], asked: [RedisScript]) {
        (sent.withLock { $0.compactMap(\.script) }, asked.withLock { $0.compactMap(\.script) })
    }
}

/// Runs `body`, or fails naming `what` if it takes longer than `limit`. The body runs in
/// a task of its own and is abandoned at the deadline: a wait that does not honour
/// cancellation (a held acknowledgement) cannot hang the test. (The integration tests
/// have the same helper; the two test targets share no module.)
func within<T: Sendable>(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let gate = OnceGate()
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        Task {
            do {
                let value = try await body()
                if gate.pass() { continuation.resume(returning: value) }
            } catch {
                if gate.pass() { continuation.resume(throwing: error) }
            }
        }
        Task {
            try? await Task.sleep(for: limit)
            if gate.pass() { continuation.resume(throwing: TimedOut(description: "\(what) took more than \(limit)")) }
        }
    }
}

/// Lets exactly one caller through.
final class OnceGate: Sendable {
    private let open = Mutex(true)
    func pass() -> Bool { open.withLock { o in defer { o = false }; return o } }
}

struct TimedOut: Error, CustomStringConvertible {
    var description: String
}
