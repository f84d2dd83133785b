import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import SluiceCore
@testable import SluiceGateway
import Testing

/// The gateway's routes in process (HummingbirdTesting's `.router` framework), over an
/// in-memory job queue and job store: validation, keys, tenants, limits and the error
/// shape, with no broker and no Redis. What needs the real pipeline (a job's events, a
/// completion's stream) is in SluiceIntegrationTests.
struct RouteTests {
    static let keys: [SluiceConfig.APIKey] = [.init(key: "k-a", tenant: "a"), .init(key: "k-b", tenant: "b")]
    static let a: HTTPFields = [.authorization: "Bearer k-a", .contentType: "application/json"]
    static let b: HTTPFields = [.authorization: "Bearer k-b", .contentType: "application/json"]
    static let submitting = [
        "/v1/jobs", "/v1/chat/completions", "/api/engine/chat/mock", "/v1/prompts/welcome/completions",
        "/api/v1/prompts/passthrough/mock/",
    ]

    /// A request body: JSON, or raw text (what is not JSON).
    enum Body: ExpressibleByDictionaryLiteral, Sendable {
        case json(JSONValue)
        case raw(String)

        init(dictionaryLiteral elements: (String, JSONValue)...) {
            self = .json(.object(Dictionary(elements, uniquingKeysWith: { $1 })))
        }

        func bytes() throws -> [UInt8] {
            switch self {
            case .json(let value): try JSON.encode(value)
            case .raw(let text): Array(text.utf8)
            }
        }
    }

    struct Answer {
        var status: Int
        var headers: HTTPFields
        var text: String
        var json: JSONValue { (try? JSON.decode(JSONValue.self, from: Array(text.utf8))) ?? .null }
    }

    /// Runs `body` against a gateway over `queue` and `store`. Its Redis URL points at a
    /// port nothing listens on: no route these tests call follows a job's events.
    static func withGateway(
        queue: InMemoryJobQueue = InMemoryJobQueue(), store: InMemoryJobStore = InMemoryJobStore(),
        configure: (inout SluiceConfig) -> Void = { _ in },
        _ body: @Sendable (_ call: @escaping @Sendable (HTTPRequest.Method, String, HTTPFields, Body?) async throws -> Answer) async throws -> Void
    ) async throws {
        var config = SluiceConfig()
        config.redis.url = "redis://127.0.0.1:1"
        config.gateway.listen = "127.0.0.1:0"
        config.gateway.apiKeys = keys
        config.gateway.adminKey = "k-admin"
        config.providers = [.init(name: "mock", kind: .mock, baseURL: "http://127.0.0.1:1")]
        config.models = ["default": ModelTarget(provider: "mock", model: "mock-1")]
        configure(&config)
        let gateway = try Gateway(config: config, logger: Logger(label: "route-tests"), queue: queue, store: store, environment: [:])
        defer { gateway.shutdown() }
        try await gateway.buildApplication().test(.router) { client in
            try await body { method, path, headers, json in
                let bytes = try json?.bytes() ?? []
                return try await client.execute(uri: path, method: method, headers: headers, body: ByteBuffer(bytes: bytes)) { response in
                    Answer(status: Int(response.status.code), headers: response.headers, text: String(buffer: response.body))
                }
            }
        }
    }

    /// The error shape every failure has: `{"error": {message, type, param, code}}`.
    static func expectErrorShape(_ answer: Answer, sourceLocation: SourceLocation = #_sourceLocation) {
        let error = answer.json["error"]?.objectValue
        #expect(error.map { Set($0.keys) } == ["message", "type", "param", "code"], "\(answer.text)", sourceLocation: sourceLocation)
        #expect(error?["message"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
    }

    @Test func everySubmittingRouteNamesTheBadField() async throws {
        let cases: [(String, JSONValue, String)] = [
            ("/v1/jobs", ["model": "default", "chat_input": "x", "max_tokens": -1], "max_tokens"),
            ("/v1/jobs", ["model": "default", "chat_input": "x", "id": "../x"], "id"),
            ("/v1/jobs", ["model": "no-such-model", "chat_input": "x"], "model"),
            ("/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]]], "model"),
            ("/v1/chat/completions", ["model": "default", "messages": "hello"], "messages"),
            ("/v1/chat/completions", ["model": "default", "messages": [["content": "no role"]]], "messages"),
            ("/v1/chat/completions", ["model": "no-such-model", "messages": [["role": "user", "content": "hi"]]], "model"),
            ("/v1/chat/completions", ["model": "default", "messages": [["role": "user", "content": "hi"]], "stream": "maybe"], "stream"),
            ("/api/engine/chat/mock", ["model": "m", "chat_input": "x", "parameters": ["temperature": 1e308]], "temperature"),
        ]
        let queue = InMemoryJobQueue()
        try await Self.withGateway(queue: queue) { call in
            for (path, body, field) in cases {
                let answer = try await call(.post, path, Self.a, .json(body))
                #expect((400..<500).contains(answer.status), "\(path) \(body): \(answer.text)")
                Self.expectErrorShape(answer)
                #expect(answer.json["error"]?["param"]?.stringValue == field, "\(path) \(body): \(answer.text)")
                #expect(answer.json["error"]?["message"]?.stringValue?.contains(field) == true, "\(answer.text)")
            }
            // A body that is not a JSON object, on every submitting route.
            for path in Self.submitting {
                for raw in ["{not json", "[1, 2]", "\"a string\"", ""] {
                    let answer = try await call(.post, path, Self.a, .raw(raw))
                    #expect(answer.status == 400, "\(path) \(raw): \(answer.text)")
                    Self.expectErrorShape(answer)
                }
            }
        }
        #expect(queue.records.isEmpty, "nothing refused reaches the queue")
    }

    @Test func keysAreRequiredAndNeverEchoed() async throws {
        try await Self.withGateway { call in
            for (method, path) in [(HTTPRequest.Method.get, "/v1/jobs/some-job"), (.get, "/v1/providers"), (.get, "/v1/usage"), (.delete, "/v1/jobs/x")] {
                let missing = try await call(method, path, [:], nil)
                #expect(missing.status == 401, "\(path)")
                #expect(missing.json["error"]?["type"] == "authentication_error")
                Self.expectErrorShape(missing)
                let wrong = try await call(method, path, [.authorization: "Bearer k-not-a-key"], nil)
                #expect(wrong.status == 401)
                #expect(!wrong.text.contains("k-not-a-key"))
            }
            let noKeyJob = try await call(.post, "/v1/jobs", [.contentType: "application/json"], ["model": "default", "chat_input": "x"])
            #expect(noKeyJob.status == 401)
            #expect(try await call(.get, "/metrics", Self.a, nil).status == 401)
            #expect(try await call(.get, "/metrics", [.authorization: "Bearer k-admin"], nil).status == 200)
            #expect(try await call(.get, "/healthz", [:], nil).status == 200)
        }
    }

    @Test func bodiesOverTheLimitAre413AndOthersThanJSONAre415() async throws {
        let big: JSONValue = ["model": "default", "messages": [["role": "user", "content": .string(String(repeating: "x", count: 8000))]]]
        let queue = InMemoryJobQueue()
        try await Self.withGateway(queue: queue, configure: { $0.gateway.maxBodyBytes = 4096 }) { call in
            for path in Self.submitting {
                let answer = try await call(.post, path, Self.a, .json(big))
                #expect(answer.status == 413, "\(path)")
                #expect(answer.json["error"]?["code"] == "request_too_large", "\(path)")
                Self.expectErrorShape(answer)
                for contentType in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
                    var headers = Self.a
                    headers[.contentType] = contentType
                    let refused = try await call(.post, path, headers, ["model": "default", "chat_input": "x"])
                    #expect(refused.status == 415, "\(path) \(contentType)")
                    #expect(refused.json["error"]?["code"] == "unsupported_media_type")
                    #expect(refused.json["error"]?["message"]?.stringValue?.contains("application/json") == true)
                }
            }
        }
        #expect(queue.records.isEmpty)
        // JSON with parameters is JSON.
        try await Self.withGateway(queue: queue) { call in
            var headers = Self.a
            headers[.contentType] = "application/json; charset=utf-8"
            let accepted = try await call(.post, "/v1/jobs", headers, ["model": "default", "chat_input": "x"])
            #expect(accepted.status == 202)
        }
        #expect(queue.records.count == 1)
    }

    @Test func aJobIsOnlyItsTenants() async throws {
        let queue = InMemoryJobQueue()
        let store = InMemoryJobStore()
        try await Self.withGateway(queue: queue, store: store) { call in
            let accepted = try await call(.post, "/v1/jobs", Self.a, ["id": "job-of-a", "model": "default", "chat_input": "A's secret"])
            #expect(accepted.status == 202, "\(accepted.text)")
            #expect(accepted.json["status"] == "queued")
            #expect(queue.records.map(\.key) == ["job-of-a"])
            #expect(try await call(.get, "/v1/jobs/job-of-a", Self.a, nil).status == 200)

            // B gets what a job that does not exist gets, and cannot cancel A's.
            for (method, path) in [(HTTPRequest.Method.get, "/v1/jobs/job-of-a"), (.delete, "/v1/jobs/job-of-a"), (.get, "/v1/jobs/job-of-a/events")] {
                let other = try await call(method, path, Self.b, nil)
                let none = try await call(method, path.replacingOccurrences(of: "job-of-a", with: "no-such-job"), Self.b, nil)
                #expect(other.status == 404, "\(method) \(path)")
                #expect(other.text == none.text.replacingOccurrences(of: "no-such-job", with: "job-of-a"))
                #expect(!other.text.contains("secret"))
            }
            #expect(queue.records.count == 1, "no cancel was produced for B")
            #expect(store.with { $0.metas["job-of-a"]?.cancelRequested } == false)

            // B cannot take the id over; A's resubmission is the existing job.
            let taken = try await call(.post, "/v1/jobs", Self.b, ["id": "job-of-a", "model": "default", "chat_input": "x"])
            #expect(taken.status == 409)
            #expect(taken.json["error"]?["code"] == "job_id_conflict")
            #expect(!taken.text.contains("\"a\""))
            let again = try await call(.post, "/v1/jobs", Self.a, ["id": "job-of-a", "model": "default", "chat_input": "A's secret"])
            #expect(again.status == 202)
            #expect(queue.records.count == 1, "a resubmission produces nothing")

            // A's cancel is produced to the control topic and noted.
            let cancel = try await call(.delete, "/v1/jobs/job-of-a", Self.a, nil)
            #expect(cancel.status == 202)
            #expect(queue.records.last?.topic == SluiceConfig().kafka.controlTopic)
            #expect(try await call(.get, "/v1/jobs/job-of-a", Self.a, nil).json["status"] == "cancelling")
        }
    }

    @Test func aTenantOverItsCapIsRefusedAndTheIdStaysFree() async throws {
        let store = InMemoryJobStore()
        try await Self.withGateway(store: store, configure: { $0.gateway.maxJobsPerTenant = 2 }) { call in
            for i in 0..<2 {
                #expect(try await call(.post, "/v1/jobs", Self.a, ["id": .string("cap-\(i)"), "model": "default", "chat_input": "x"]).status == 202)
            }
            let third = try await call(.post, "/v1/jobs", Self.a, ["id": "cap-2", "model": "default", "chat_input": "x"])
            #expect(third.status == 429)
            #expect(third.json["error"]?["code"] == "too_many_jobs")
            #expect(third.json["error"]?["message"]?.stringValue?.contains("max_jobs_per_tenant") == true)
            #expect(third.headers[.retryAfter] != nil)
            Self.expectErrorShape(third)
            #expect(store.with { $0.metas["cap-2"] } == nil, "the refused id is free again")
            #expect(try await call(.post, "/v1/jobs", Self.b, ["id": "cap-b", "model": "default", "chat_input": "x"]).status == 202)
        }
    }

    @Test func aTenantOverItsDailySpendIsRefused() async throws {
        let store = InMemoryJobStore()
        let today = UsageDay(unixSeconds: Date().timeIntervalSince1970)
        store.with { $0.usage["a:\(today)"] = [(TenantUsage.Field.costMicroUSD, "2000000")] }
        let queue = InMemoryJobQueue()
        try await Self.withGateway(queue: queue, store: store, configure: { $0.quotas.maxSpendUSDPerDay = 1 }) { call in
            let refused = try await call(.post, "/v1/jobs", Self.a, ["id": "over", "model": "default", "chat_input": "x"])
            #expect(refused.status == 429, "\(refused.text)")
            #expect(refused.json["error"]?["code"] == "quota_exceeded")
            Self.expectErrorShape(refused)
            #expect(store.with { $0.metas["over"] } == nil)
            #expect(try await call(.post, "/v1/jobs", Self.b, ["model": "default", "chat_input": "x"]).status == 202)
            let usage = try await call(.get, "/v1/usage", Self.a, nil)
            #expect(usage.json["cost_usd"] == 2)
            #expect(usage.json["remaining"]?["spend_usd"] == 0)
        }
        #expect(queue.records.count == 1)
    }

    @Test func anUnreachableQueueOrStoreIs503() async throws {
        let queue = InMemoryJobQueue()
        let store = InMemoryJobStore()
        try await Self.withGateway(queue: queue, store: store) { call in
            queue.setDown(true)
            let noQueue = try await call(.post, "/v1/jobs", Self.a, ["id": "q", "model": "default", "chat_input": "x"])
            #expect(noQueue.status == 503)
            Self.expectErrorShape(noQueue)
            #expect(store.with { $0.metas["q"] } == nil, "the id is freed for a retry")
            #expect(try await call(.get, "/readyz", [:], nil).status == 503)
            queue.setDown(false)
            store.with { $0.down = true }
            #expect(try await call(.get, "/v1/jobs/q", Self.a, nil).status == 503)
            let ready = try await call(.get, "/readyz", [.authorization: "Bearer k-admin"], nil)
            #expect(ready.status == 503)
            #expect(ready.json["checks"]?["redis"]?["ok"] == false)
            #expect(ready.json["checks"]?["kafka"]?["ok"] == true)
        }
    }

    @Test func theAPIDescriptionAndUnknownRoutes() async throws {
        try await Self.withGateway { call in
            let document = try await call(.get, "/openapi.json", [:], nil)
            #expect(document.status == 200)
            #expect(document.json["paths"]?["/v1/jobs"] != nil)
            let unknown = try await call(.get, "/v1/nothing-here", [:], nil)
            #expect(unknown.status == 404)
            #expect(unknown.json["error"]?["type"] == "not_found_error")
            Self.expectErrorShape(unknown)
        }
    }
}
