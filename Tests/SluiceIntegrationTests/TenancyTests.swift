import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceKafka
import SluiceMockProvider
import SluiceRedis
import Testing

/// Tenancy, played by a hostile second tenant: tenant B knows (or guesses) tenant A's job
/// ids and tries every route with them. Nothing of A's may be visible or changeable.
@Suite(.needsServices, .timeLimit(.minutes(4)))
struct TenancyTests {
    static let keys: [SluiceConfig.APIKey] = [
        .init(key: "k-a", tenant: "a"), .init(key: "k-b", tenant: "b"), .init(key: "k-default", tenant: "default"),
    ]
    static let a: HTTPHeaders = ["authorization": "Bearer k-a"]
    static let b: HTTPHeaders = ["authorization": "Bearer k-b"]
    static let defaultTenant: HTTPHeaders = ["authorization": "Bearer k-default"]

    /// A unique id that a client might have chosen.
    static func clientID(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(8).lowercased())" }

    // MARK: Job ids

    @Test func anotherTenantCannotTakeOverAJobIdAndTheOwnerCanResubmitIt() async throws {
        try await TestStack.with(gateway: true, configure: { $0.gateway.apiKeys = Self.keys }) { stack in
            let id = Self.clientID("victim")
            let first = try await stack.call("POST", "/v1/jobs", headers: Self.a, json: [
                "id": .string(id), "model": "default", "chat_input": "A's secret prompt",
            ])
            #expect(first.status == 202)
            let own = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: Self.a)
            #expect(own.events.last?.event == "chat_finished")
            let eventsBefore = try await stack.events(of: id).count

            // B reuses the id: refused, without a word about whose it is.
            let taken = try await stack.call("POST", "/v1/jobs", headers: Self.b, json: [
                "id": .string(id), "model": "default", "chat_input": "B's prompt",
            ])
            #expect(taken.status == 409)
            #expect(taken.json["error"]?["code"] == "job_id_conflict")
            #expect(!taken.text.contains("\"a\"") && !taken.text.contains("secret"))
            #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.b).status == 404)

            // A still sees its own job, untouched.
            let status = try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.a)
            #expect(status.status == 200)
            #expect(status.json["result"]?["chat_input"] == "A's secret prompt")

            // A resubmits: the existing job is the answer, and nothing runs again.
            let again = try await stack.call("POST", "/v1/jobs", headers: Self.a, json: [
                "id": .string(id), "model": "default", "chat_input": "A's secret prompt",
            ])
            #expect(again.status == 202)
            #expect(again.json["id"] == .string(id))
            #expect(again.json["status"] == "succeeded")
            #expect(again.json["events_url"] == .string("/v1/jobs/\(id)/events"))
            let results = try await stack.waitForResults(1)
            #expect(results.count == 1)
            #expect(try await stack.events(of: id).count == eventsBefore)
        }
    }

    @Test func aKafkaJobBelongsToTheTenantItNamesAndNoOtherOne() async throws {
        try await TestStack.with(gateway: true, configure: { $0.gateway.apiKeys = Self.keys }) { stack in
            let id = Self.clientID("from-kafka")
            try await stack.submit(["id": .string(id), "model": "default", "chat_input": "x", "tenant": "a"])
            _ = try await stack.waitForResults(1)
            try await stack.eventually("the job's last event is stored") {
                try await stack.events(of: id).last?["event"] == "chat_finished"
            }
            let own = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: Self.a)
            #expect(own.status == 200)
            #expect(own.events.last?.event == "chat_finished")
            #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.a).json["status"] == "succeeded")
            for headers in [Self.b, Self.defaultTenant] {
                #expect(try await stack.call("GET", "/v1/jobs/\(id)/events", headers: headers).status == 404)
                #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: headers).status == 404)
            }
            // And B cannot claim it through the gateway either.
            let taken = try await stack.call("POST", "/v1/jobs", headers: Self.b, json: ["id": .string(id), "model": "default", "chat_input": "y"])
            #expect(taken.status == 409)
        }
    }

    @Test func aWorkerDoesNotPublishIntoAnotherTenantsJob() async throws {
        try await TestStack.with(gateway: true, configure: { $0.gateway.apiKeys = Self.keys }) { stack in
            let id = Self.clientID("taken")
            #expect(try await stack.call("POST", "/v1/jobs", headers: Self.a, json: [
                "id": .string(id), "model": "default", "chat_input": "A's",
            ]).status == 202)
            _ = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: Self.a)
            let before = try await stack.events(of: id)
            let storedBefore = try await stack.redis.execute(RedisCommand("GET", RedisKeys.result(id))).bytes

            // B's backend produces the same id straight to Kafka.
            try await stack.submit(["id": .string(id), "model": "default", "chat_input": "B's", "tenant": "b"])
            // A's result and the id_conflict answer to B share the key: two messages, by design.
            let messages = try await stack.results.waitForDistinctKeys(1, timeout: .seconds(30), duplicates: .allowed)
            try await stack.eventually("B's job is answered on the result topic") {
                stack.results.all.count == 2
            }
            let refused = try JSON.decode(UnifiedResponse.self, from: try #require(stack.results.all.last).value)
            #expect(messages.count == 1)
            #expect(refused.status == .failed)
            #expect(refused.error?.type == "id_conflict")
            // Nothing of B's reached A's job.
            #expect(try await stack.events(of: id) == before)
            #expect(try await stack.redis.execute(RedisCommand("GET", RedisKeys.result(id))).bytes == storedBefore)
        }
    }

    @Test func ownershipLastsAsLongAsTheEventsOfAJobThatOutlivesTheTTL() async throws {
        try await TestStack.with(
            mock: MockBehavior(chunks: 8, chunkDelay: .milliseconds(400)), gateway: true,
            configure: { $0.gateway.apiKeys = Self.keys; $0.redis.eventTTLSeconds = 2 }
        ) { stack in
            let accepted = try await stack.call("POST", "/v1/jobs", headers: Self.a, json: ["model": "default", "chat_input": "slow"])
            let id = try #require(accepted.json["id"]?.stringValue)
            // The job runs longer (about 3 s) than the TTL that started at its submission;
            // while it runs, past that TTL, the id is still A's.
            let stream = try await stack.openStream("/v1/jobs/\(id)/events", headers: Self.a)
            var chunks = 0
            while chunks < 6, let event = try await stream.next(), event.event != "chat_finished" {
                if event.event == "chunk" { chunks += 1 }
            }
            #expect(chunks == 6)
            let midway = try await stack.call("POST", "/v1/jobs", headers: Self.b, json: ["id": .string(id), "model": "default", "chat_input": "mine now"])
            #expect(midway.status == 409)
            #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.a).json["status"] == "running")
            let rest = try await stream.rest()
            #expect(rest.last?.event == "chat_finished")
            let ttls = try await stack.redis.execute([
                RedisCommand("PTTL", RedisKeys.meta(id)), RedisCommand("PTTL", RedisKeys.events(id)), RedisCommand("PTTL", RedisKeys.result(id)),
            ]).map { $0.int ?? -9 }
            #expect(ttls.allSatisfy { $0 > 0 }, "\(ttls)")
            #expect(abs(ttls[0] - ttls[1]) < 500, "\(ttls)")
            #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.a).json["status"] == "succeeded")
            #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.defaultTenant).status == 404)
        }
    }

    @Test func aJobWithNoRecordedOwnerIsNobodys() async throws {
        // An open gateway: every request is the `default` tenant's.
        try await TestStack.with(gateway: true) { stack in
            let id = Self.clientID("orphan")
            try await stack.submit(["id": .string(id), "model": "default", "chat_input": "x"])
            _ = try await stack.waitForResults(1)
            try await stack.eventually("the job's last event is stored") {
                try await stack.events(of: id).last?["event"] == "chat_finished"
            }
            #expect(try await stack.call("GET", "/v1/jobs/\(id)").status == 200)
            // Its owner gone, events and result left: not found, and not claimable.
            _ = try await stack.redis.execute(RedisCommand("DEL", RedisKeys.meta(id)))
            #expect(try await stack.call("GET", "/v1/jobs/\(id)").status == 404)
            #expect(try await stack.call("GET", "/v1/jobs/\(id)/events").status == 404)
            #expect(try await stack.call("POST", "/v1/jobs", json: ["id": .string(id), "model": "default", "chat_input": "y"]).status == 409)
        }
    }

    // MARK: Cancels

    @Test func aCancelStopsOnlyTheSubmissionOfTheTenantItNames() async throws {
        try await TestStack.with(
            mock: MockBehavior(chunks: 10, chunkDelay: .milliseconds(300)), gateway: true,
            configure: { $0.gateway.apiKeys = Self.keys }
        ) { stack in
            let x = Self.clientID("cancel-target")
            // Cancels that are not for A's coming job X: B's, and A's of another submission.
            for cancel: JSONValue in [
                ["type": "cancel", "job_id": .string(x), "tenant": "b"],
                ["type": "cancel", "job_id": .string(x), "tenant": "a", "submission_id": "an-earlier-submission"],
            ] {
                try await stack.submitRaw(try JSON.encode(cancel), key: x, topic: stack.config.kafka.controlTopic)
            }
            #expect(try await stack.call("POST", "/v1/jobs", headers: Self.a, json: ["id": .string(x), "model": "default", "chat_input": "x"]).status == 202)
            let y = try #require(try await stack.call("POST", "/v1/jobs", headers: Self.a, json: ["model": "default", "chat_input": "y"]).json["id"]?.stringValue)
            try await stack.eventually("both jobs stream", timeout: .seconds(20)) {
                let xStreams = try await stack.events(of: x).contains { $0["event"] == "chunk" }
                let yStreams = try await stack.events(of: y).contains { $0["event"] == "chunk" }
                return xStreams && yStreams
            }
            // B cannot cancel A's job through the gateway either.
            #expect(try await stack.call("DELETE", "/v1/jobs/\(x)", headers: Self.b).status == 404)
            // A's own cancel of Y, read after the ones above (one partition, in order).
            #expect(try await stack.call("DELETE", "/v1/jobs/\(y)", headers: Self.a).status == 202)
            let results = try await stack.waitForResults(2, timeout: .seconds(30))
            #expect(results[y]?.status == .cancelled)
            #expect(results[x]?.status == .succeeded)
        }
    }

    // MARK: Providers and models

    @Test func aTenantRunsOnlyTheProvidersAndModelsItsKeyAllows() async throws {
        try await TestStack.with(gateway: true, configure: { config in
            config.providers.append(.init(name: "mock2", kind: .mock, baseURL: config.providers[0].baseURL))
            config.models["other"] = ModelTarget(provider: "mock2", model: "mock-1")
            config.gateway.apiKeys = [
                .init(key: "k-a", tenant: "a", providers: ["mock"], models: ["default", "mock/m-allowed"]),
                .init(key: "k-b", tenant: "b"),
            ]
        }) { stack in
            let refused: [(String, JSONValue, String)] = [
                ("/v1/jobs", ["model": "other", "chat_input": "x"], "\"other\""),
                ("/v1/jobs", ["model": "mock/m-secret", "chat_input": "x"], "\"mock/m-secret\""),
                ("/v1/jobs", ["provider": "mock", "model": "m-secret", "chat_input": "x"], "\"m-secret\""),
                ("/v1/jobs", ["model": "default", "chat_input": "x", "fallbacks": [["provider": "mock2", "model": "m"]]], "\"m\""),
                ("/v1/chat/completions", ["model": "other", "messages": GatewayTests.user], "\"other\""),
                ("/api/engine/chat/mock2", ["model": "mock-1", "chat_input": "x"], "\"mock-1\""),
                ("/api/v1/prompts/passthrough/mock2/", ["model": "mock-1", "messages": GatewayTests.user], "\"mock-1\""),
                ("/api/v1/prompts/passthrough/mock/", ["model": "m-secret", "messages": GatewayTests.user], "\"m-secret\""),
            ]
            for (path, body, named) in refused {
                let answer = try await stack.call("POST", path, headers: Self.a, json: body)
                #expect(answer.status == 403, "\(path) \(body)")
                #expect(answer.json["error"]?["code"] == "model_not_allowed", "\(path)")
                #expect(answer.json["error"]?["message"]?.stringValue?.contains(named) == true, "\(answer.text)")
            }
            #expect(try await stack.call("POST", "/v1/jobs", headers: Self.a, json: ["model": "default", "chat_input": "x"]).status == 202)
            #expect(try await stack.call("POST", "/v1/jobs", headers: Self.a, json: ["model": "mock/m-allowed", "chat_input": "x"]).status == 202)
            // A key without lists runs everything configured.
            #expect(try await stack.call("POST", "/v1/jobs", headers: Self.b, json: ["model": "other", "chat_input": "x"]).status == 202)
            // Nothing refused reached the queue.
            #expect(try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="jobs"}"#) == 3)
            for api in ["openai", "llmstudio", "passthrough"] {
                #expect(try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="\#(api)"}"#) ?? 0 == 0)
            }
        }
    }

    // MARK: What operators see and tenants do not

    @Test func aTenantSeesNoHostsPortsOrProviderInternals() async throws {
        try await TestStack.with(gateway: true, configure: { config in
            config.providers.append(.init(name: "down", kind: .openaiCompatible, baseURL: "http://127.0.0.1:9/v1"))
            config.gateway.apiKeys = Self.keys
            config.worker.maxAttempts = 1
        }) { stack in
            // Operators' routes: the readiness verdict only, no metrics, no URLs.
            #expect(try await stack.call("GET", "/readyz", headers: Self.b).json == ["status": "ready"])
            #expect(try await stack.call("GET", "/metrics", headers: Self.b).status == 401)
            let providers = try await stack.call("GET", "/v1/providers", headers: Self.b)
            #expect(providers.status == 200)
            #expect(!providers.text.contains("127.0.0.1") && !providers.text.contains("base_url"))

            // Failures: the provider and what happened, not where it runs or what it said
            // about the operator's account.
            let cases: [(model: String, says: String, mustNot: [String])] = [
                ("down/x", "could not connect to provider \"down\"", ["127.0.0.1", ":9", "port 9", "refused"]),
                ("mock/m-status=401", "mock answered 401", ["Incorrect API key", "invalid_api_key"]),
                ("mock/m-status=500", "mock answered 500", ["processing your request"]),
                ("mock/m-status=400", "mock answered 400: Invalid request", []),
            ]
            for c in cases {
                let accepted = try await stack.call("POST", "/v1/jobs", headers: Self.b, json: ["model": .string(c.model), "chat_input": "x"])
                let id = try #require(accepted.json["id"]?.stringValue)
                let events = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: Self.b)
                let status = try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.b)
                let message = status.json["result"]?["error"]?["message"]?.stringValue ?? ""
                #expect(message.contains(c.says), "\(c.model): \(message)")
                for text in c.mustNot {
                    #expect(!status.text.contains(text), "\(c.model): \(text) in \(status.text)")
                    #expect(!events.text.contains(text), "\(c.model): \(text) in its events")
                }
            }
        }
    }

    // MARK: Every route, played by B

    /// A's jobs from every submitting route; B tries every route that names a job with
    /// their ids. B gets exactly what a job that does not exist gets, and A's jobs are
    /// the same afterwards: events, result, and no cancel recorded.
    @Test func tenantBCanNeitherSeeNorChangeAnyOfTenantAsJobs() async throws {
        let prompts = try JobKindTests.promptsDir()
        try await TestStack.with(gateway: true, configure: { $0.gateway.apiKeys = Self.keys; $0.promptsDir = prompts }) { stack in
            // A's jobs, one per route that submits.
            var ids: [String] = []
            let chosen = Self.clientID("order")
            let submitted = try await stack.call("POST", "/v1/jobs", headers: Self.a, json: [
                "id": .string(chosen), "model": "default", "chat_input": "A's private question",
            ])
            #expect(submitted.status == 202)
            ids.append(chosen)
            let completions: [(String, JSONValue)] = [
                ("/v1/chat/completions", ["model": "default", "messages": [["role": "user", "content": "A's chat"]]]),
                ("/api/engine/chat/mock", ["model": "mock-1", "chat_input": "A's engine chat", "is_stream": false]),
                ("/v1/prompts/welcome/completions", ["variables": ["name": "Ada", "city": "London"]]),
                ("/api/v1/prompts/passthrough/mock/", ["model": "mock-1", "messages": [["role": "user", "content": "A's raw body"]]]),
            ]
            for (path, body) in completions {
                let answer = try await stack.call("POST", path, headers: Self.a, json: body)
                #expect(answer.status == 200, "\(path)")
                ids.append(try #require(answer.headers["x-sluice-job-id"], "\(path)"))
            }
            _ = try await stack.call("GET", "/v1/jobs/\(chosen)/events", headers: Self.a)
            var before: [String: ([JSONValue], [UInt8]?)] = [:]
            for id in ids {
                before[id] = (try await stack.events(of: id), try await stack.redis.execute(RedisCommand("GET", RedisKeys.result(id))).bytes)
                #expect(before[id]?.1 != nil, "A's job \(id) has a result")
            }

            // B, with every route that takes a job id, and again with ids that do not exist.
            let missing = Self.clientID("no-such-job")
            for id in ids {
                let probes: [(String, String, HTTPHeaders)] = [
                    ("GET", "/v1/jobs/\(id)", Self.b),
                    ("GET", "/v1/jobs/\(id)/events", Self.b),
                    ("GET", "/v1/jobs/\(id)/events?last_event_id=0", Self.b),
                    ("GET", "/v1/jobs/\(id)/events", ["authorization": "Bearer k-b", "last-event-id": "1"]),
                    ("DELETE", "/v1/jobs/\(id)", Self.b),
                ]
                for (method, path, headers) in probes {
                    let answer = try await stack.call(method, path, headers: headers)
                    let none = try await stack.call(method, path.replacingOccurrences(of: id, with: missing), headers: headers)
                    #expect(answer.status == 404, "\(method) \(path)")
                    #expect(answer.text == none.text.replacingOccurrences(of: missing, with: id), "\(method) \(path): \(answer.text)")
                }
                // Reusing the id: refused, for a completion's id as for a chosen one.
                let reuse = try await stack.call("POST", "/v1/jobs", headers: Self.b, json: ["id": .string(id), "model": "default", "chat_input": "B"])
                #expect(reuse.status == 409, "\(id)")
                // The open gateway's tenant is not a back door either.
                #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.defaultTenant).status == 404)
            }

            // A's jobs are as they were, with nothing of B's in them.
            for id in ids {
                #expect(try await stack.events(of: id) == before[id]?.0, "\(id)'s events")
                #expect(try await stack.redis.execute(RedisCommand("GET", RedisKeys.result(id))).bytes == before[id]?.1, "\(id)'s result")
                let cancel = try await stack.redis.execute(RedisCommand("HGET", RedisKeys.meta(id), "cancel_requested_at"))
                #expect(cancel.string == nil, "\(id): a cancel was recorded")
                let own = try await stack.call("GET", "/v1/jobs/\(id)", headers: Self.a)
                #expect(own.status == 200)
                #expect(own.json["status"] == "succeeded")
            }
            // And no message of B's reached the control topic.
            #expect(try await stack.metric(#"sluice_gateway_jobs_cancelled_total{reason="delete"}"#) ?? 0 == 0)
        }
    }
}
