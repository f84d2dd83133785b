import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceRedis
import ServiceLifecycle
import SluiceGateway
import Testing
import SluiceSupport

/// Requests to the in-process gateway of a `TestStack`, and readers of its event streams.
extension TestStack {
    struct Answer: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]

        var json: JSONValue { (try? JSON.decode(JSONValue.self, from: body)) ?? .null }
        var text: String { String(decoding: body, as: UTF8.self) }
        /// The body read as Server-Sent Events.
        var events: [SSEEvent] { parseSSE(body) }
    }

    /// Any request to the gateway, body collected.
    func call(_ method: String, _ path: String, headers: HTTPHeaders = [:], body: [UInt8] = []) async throws -> Answer {
        let url = try #require(gatewayURL) + path
        var headers = headers
        if !body.isEmpty, !headers.contains("content-type") { headers.add(name: "content-type", value: "application/json") }
        let response = try await http.execute(HTTPRequest(method: method, url: url, headers: headers, body: body, totalTimeout: .seconds(90)))
        return Answer(status: response.status, headers: response.headers, body: try await response.body.collect(upTo: 64 << 20))
    }

    func call(_ method: String, _ path: String, headers: HTTPHeaders = [:], json: JSONValue) async throws -> Answer {
        try await call(method, path, headers: headers, body: try JSON.encode(json))
    }

    /// Opens an event stream; read it with `next()`, drop it (or `close()`) to disconnect.
    func openStream(_ path: String, method: String = "GET", headers: HTTPHeaders = [:], json: JSONValue? = nil) async throws -> EventStreamReader {
        let url = try #require(gatewayURL) + path
        var headers = headers
        var body: [UInt8] = []
        if let json {
            body = try JSON.encode(json)
            headers.add(name: "content-type", value: "application/json")
        }
        let response = try await http.execute(HTTPRequest(method: method, url: url, headers: headers, body: body))
        return EventStreamReader(response: response)
    }

    /// `PUBSUB NUMSUB` of a job's channel: how many subscriptions Redis holds for it.
    func subscribers(ofJob jobID: String) async throws -> Int {
        let reply = try await redis.execute(RedisCommand("PUBSUB", "NUMSUB", RedisKeys.channel(jobID)))
        return Int(reply.array?.last?.int ?? -1)
    }

    /// Waits until `condition` holds, or fails after `timeout`.
    func eventually(
        _ what: String, timeout: Duration = .seconds(5), _ condition: () async throws -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("\(what) did not happen within \(timeout)", sourceLocation: sourceLocation)
    }

    /// The value of one Prometheus sample of the gateway's `/metrics` (nil if absent).
    func metric(_ sample: String) async throws -> Double? {
        let text = try await call("GET", "/metrics", headers: TestStack.admin).text
        for line in text.split(separator: "\n") where line.hasPrefix(sample + " ") {
            return Double(line.dropFirst(sample.count + 1))
        }
        return nil
    }
}

/// Reads a streaming response event by event.
final class EventStreamReader: @unchecked Sendable {
    // @unchecked: used by one test task at a time.
    let response: HTTPResponse
    var status: Int { response.status }
    private var iterator: HTTPResponseBody.AsyncIterator?
    private var parser = SSEParser()
    private var pending: [SSEEvent] = []

    init(response: HTTPResponse) {
        self.response = response
        self.iterator = response.body.makeAsyncIterator()
    }

    /// The next event; nil at the end of the stream.
    func next() async throws -> SSEEvent? {
        while pending.isEmpty {
            guard var it = iterator else { return nil }
            guard let bytes = try await it.next() else {
                iterator = nil
                if let last = parser.finish() { pending.append(last) }
                break
            }
            iterator = it
            pending += parser.feed(bytes)
        }
        return pending.isEmpty ? nil : pending.removeFirst()
    }

    /// Every event to the end.
    func rest() async throws -> [SSEEvent] {
        var out: [SSEEvent] = []
        while let e = try await next() { out.append(e) }
        return out
    }

    /// Disconnects: the transfer is aborted and its connection closed.
    func close() {
        response.body.abort()
        iterator = nil
    }
}

/// Where the repository is (for Tests/clients and .deps).
enum Repository {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

/// A gateway alone (no worker, no TestStack), for configurations a whole stack cannot
/// run with (an unreachable broker) and for watching it shut down: `body` gets its base
/// URL; the gateway is shut down gracefully when `body` returns.
func withGatewayOnly(_ config: SluiceConfig, _ body: (_ baseURL: String) async throws -> Void) async throws {
    let logger = TestServices.logger
    let gateway = try Gateway(config: config, logger: logger)
    defer { gateway.shutdown() }
    let port = PortBox()
    let app = try gateway.buildApplication { port.set($0) }
    let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            try await body("http://127.0.0.1:\(try await port.wait())")
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}

extension HTTPClient {
    /// A GET, body collected, for tests.
    func get(_ url: String, headers: HTTPHeaders = [:]) async throws -> TestStack.Answer {
        let response = try await execute(HTTPRequest(method: "GET", url: url, headers: headers, totalTimeout: .seconds(30)))
        return TestStack.Answer(status: response.status, headers: response.headers, body: try await response.body.collect())
    }
}

/// Runs a script of Tests/clients with the PyPI clients of .deps/python-clients.
enum PythonClient {
    struct Run: Sendable {
        var status: Int32
        var output: String
    }

    static func run(_ script: String, environment: [String: String], timeout: Duration = .seconds(120)) async throws -> Run {
        let deps = Repository.root.appendingPathComponent(".deps/python-clients")
        try #require(
            FileManager.default.fileExists(atPath: deps.appendingPathComponent("openai").path),
            "the Python clients are not installed in \(deps.path): run `make setup` (scripts/setup.sh)")
        var env = ProcessInfo.processInfo.environment
        env["PYTHONPATH"] = deps.path
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        for (k, v) in environment { env[k] = v }
        let result = try await Command.run(
            ["python3", Repository.root.appendingPathComponent("Tests/clients/\(script)").path], environment: env, timeout: timeout)
        return Run(status: result.status, output: result.text)
    }
}
