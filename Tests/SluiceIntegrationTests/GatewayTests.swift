import Foundation
import SluiceCore
import SluiceGateway
import SluiceHTTPClient
import SluiceKafka
import SluiceMockProvider
import SluiceRedis
import Synchronization
import Testing
import SluiceSupport

/// The HTTP front, in process, against the real broker and Redis and a worker: every
/// endpoint's success and error answers, auth and tenancy, limits, the OpenAPI
/// description, and the streams (resume, disconnect, many readers).
@Suite(.needsServices, .timeLimit(.minutes(4)))
struct GatewayTests {
    static let user: JSONValue = [["role": "user", "content": "Tell me a joke"]]

    // MARK: OpenAI

    @Test func chatCompletionsAnswerAChatCompletionOrChunks() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 6), gateway: true) { stack in
            let plain = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "default", "messages": Self.user, "temperature": 0.3, "max_tokens": 50,
            ])
            #expect(plain.status == 200)
            #expect(plain.headers["content-type"] == "application/json")
            let completion = plain.json
            #expect(completion["object"] == "chat.completion")
            #expect(completion["status"] == "succeeded")
            #expect(completion["usage"]?["total_tokens"]?.intValue ?? 0 > 0)
            #expect(completion["metrics"]?["output_tokens"]?.intValue == 6)
            #expect(completion["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue?.isEmpty == false)
            #expect(completion["parameters"] == ["temperature": 0.3, "max_tokens": 50])
            let jobID = try #require(completion["job_id"]?.stringValue)
            #expect(plain.headers["x-sluice-job-id"] == jobID)

            // Streaming: data lines only, each a chunk as the provider sent it, then [DONE].
            let streamed = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "default", "messages": Self.user, "stream": true,
            ])
            #expect(streamed.status == 200)
            #expect(streamed.headers["content-type"] == "text/event-stream")
            #expect(streamed.headers["cache-control"] == "no-cache")
            #expect(streamed.headers["x-accel-buffering"] == "no")
            #expect(!streamed.text.contains("event:"))
            #expect(!streamed.text.contains("id:"))
            let events = streamed.events
            #expect(events.last?.data == "[DONE]")
            let chunks = try events.dropLast().map { try JSON.decode(JSONValue.self, from: Array($0.data.utf8)) }
            #expect(chunks.allSatisfy { $0["object"] == "chat.completion.chunk" })
            // The usage-only chunk goes only to clients that asked for it.
            #expect(chunks.allSatisfy { $0["choices"]?.arrayValue?.isEmpty == false })
            let streamJob = try #require(streamed.headers["x-sluice-job-id"])
            let text = chunks.map { chunkText($0) }.joined()
            let status = try await stack.call("GET", "/v1/jobs/\(streamJob)").json
            #expect(status["status"] == "succeeded")
            #expect(text == status["result"]?["chat_output"]?.stringValue)
            // The relay is byte for byte: every chunk line is a chunk event's data.
            let stored = try await stack.events(of: streamJob).filter { $0["event"] == "chunk" }.compactMap { $0["data"] }
            #expect(chunks == stored.filter { $0["choices"]?.arrayValue?.isEmpty == false })

            let withUsage = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "default", "messages": Self.user, "stream": true, "stream_options": ["include_usage": true],
            ])
            let usageChunk = try JSON.decode(JSONValue.self, from: Array(try #require(withUsage.events.dropLast().last).data.utf8))
            #expect(usageChunk["choices"] == [])
            #expect(usageChunk["usage"]?["completion_tokens"] == 6)
        }
    }

    @Test func aFailureBeforeOrDuringTheStreamIsAnErrorObject() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 8, chunkDelay: .milliseconds(5)), gateway: true) { stack in
            // The provider drops the connection after three chunks: an error line, then [DONE].
            let broken = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "mock/mock-fail-after=3", "messages": Self.user, "stream": true,
            ])
            #expect(broken.status == 200)
            let events = broken.events
            #expect(events.last?.data == "[DONE]")
            let errorLine = try JSON.decode(JSONValue.self, from: Array(try #require(events.dropLast().last).data.utf8))
            #expect(errorLine["error"]?["message"]?.stringValue?.isEmpty == false)
            #expect(errorLine["error"]?["type"] == "provider_error")
            #expect(events.dropLast(2).allSatisfy { $0.data.contains("chat.completion.chunk") })
            #expect(events.count >= 3 + 2)

            // Not streaming: a provider's 4xx passes through, in OpenAI's shape.
            let refused = try await stack.call("POST", "/v1/chat/completions", json: [
                "model": "mock/mock-status=422", "messages": Self.user,
            ])
            #expect(refused.status == 422)
            #expect(refused.json["error"]?["code"] == "provider_error")
        }
    }

    // MARK: LLMstudio

    @Test func llmstudioChatAnswersTheSeedsShape() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 5), gateway: true) { stack in
            let answer = try await stack.call("POST", "/api/engine/chat/mock", json: [
                "api_key": "sk-llmstudio-secret", "model": "mock-1", "chat_input": "Hello! Who are you?",
                "parameters": ["temperature": 1, "max_tokens": 2048], "is_stream": "false", "session_id": "s-1",
            ])
            #expect(answer.status == 200)
            let r = answer.json
            // Every field of LLMstudio's response (seed 001/003).
            for key in ["id", "choices", "created", "model", "object", "system_fingerprint", "usage", "session_id", "chat_input",
                        "chat_output", "context", "provider", "timestamp", "parameters", "metrics"] {
                #expect(r[key] != nil, "missing \(key)")
            }
            for key in ["input_tokens", "output_tokens", "total_tokens", "cost_usd", "latency_s", "time_to_first_token_s",
                        "inter_token_latency_s", "tokens_per_second"] {
                #expect(r["metrics"]?[key] != nil, "missing metrics.\(key)")
            }
            let message = try #require(r["choices"]?.arrayValue?.first?["message"])
            #expect(message["function_call"] == .null)
            #expect(message["tool_calls"] == .null)
            #expect(r["chat_input"] == "Hello! Who are you?")
            #expect(r["context"] == [["role": "user", "content": "Hello! Who are you?"]])
            #expect(r["provider"] == "mock")
            #expect(r["session_id"] == "s-1")
            #expect(r["parameters"] == ["temperature": 1, "max_tokens": 2048])
            #expect(r["chat_output"] == message["content"])
            // The per-request provider key is never echoed or published.
            #expect(!answer.text.contains("sk-llmstudio-secret"))
            let jobID = try #require(r["job_id"]?.stringValue)
            let published = try await stack.events(of: jobID)
            #expect(!(String(decoding: try JSON.encode(JSONValue.array(published)), as: UTF8.self)).contains("sk-llmstudio-secret"))

            // is_stream in its "any" forms.
            for isStream: JSONValue in [true, "true", "True", 1] {
                let streamed = try await stack.call("POST", "/api/engine/chat/mock", json: [
                    "model": "mock-1", "chat_input": "stream please", "is_stream": isStream, "parameters": #"{"temperature": 0.5}"#,
                ])
                #expect(streamed.status == 200)
                #expect(streamed.headers["content-type"] == "text/event-stream")
                #expect(streamed.events.last?.data == "[DONE]")
                #expect(streamed.events.dropLast().map { chunkText(try? JSON.decode(JSONValue.self, from: Array($0.data.utf8))) }.joined().isEmpty == false)
            }
            let defaultIsNotStreaming = try await stack.call("POST", "/api/engine/chat/mock", json: ["model": "mock-1", "chat_input": "hi"])
            #expect(defaultIsNotStreaming.headers["content-type"] == "application/json")

            let unknown = try await stack.call("POST", "/api/engine/chat/nope", json: ["model": "m", "chat_input": "hi"])
            #expect(unknown.status == 404)
            #expect(unknown.json["error"]?["message"]?.stringValue?.contains("nope") == true)
            let noInput = try await stack.call("POST", "/api/engine/chat/mock", json: ["model": "mock-1"])
            #expect(noInput.status == 400)
            #expect(noInput.json["error"]?["param"] == "chat_input")
            let badStream = try await stack.call("POST", "/api/engine/chat/mock", json: ["model": "mock-1", "chat_input": "x", "is_stream": "sometimes"])
            #expect(badStream.status == 400)
            #expect(badStream.json["error"]?["param"] == "is_stream")
            let badParameters = try await stack.call("POST", "/api/engine/chat/mock", json: ["model": "mock-1", "chat_input": "x", "parameters": [1]])
            #expect(badParameters.status == 400)
            #expect(badParameters.json["error"]?["param"] == "parameters")
        }
    }

    // MARK: Portkey

    @Test func promptCompletionsRenderBeforeSubmitting() async throws {
        let prompts = try JobKindTests.promptsDir()
        try await TestStack.with(gateway: true, configure: { $0.promptsDir = prompts }) { stack in
            let answer = try await stack.call("POST", "/v1/prompts/welcome/completions", json: [
                "variables": ["name": "Ada", "city": "London"], "max_tokens": 32, "presence_penalty": 0.2,
            ])
            #expect(answer.status == 200)
            let r = answer.json
            #expect(r["object"] == "chat.completion")
            #expect(r["chat_input"] == "Say hello to Ada from London.")
            // The template's defaults, overridden by the request's hyperparameters.
            #expect(r["parameters"] == ["temperature": 0.2, "max_tokens": 32, "presence_penalty": 0.2])

            let streamed = try await stack.call("POST", "/v1/prompts/welcome/completions", json: [
                "variables": ["name": "Ada", "city": "London"], "stream": true,
            ])
            #expect(streamed.headers["content-type"] == "text/event-stream")
            #expect(streamed.events.last?.data == "[DONE]")
            #expect(streamed.events.count > 2)

            let submittedBefore = try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="portkey"}"#)
            let missing = try await stack.call("POST", "/v1/prompts/welcome/completions", json: ["variables": ["name": "Ada"]])
            #expect(missing.status == 400)
            #expect(missing.json["error"]?["message"] == "missing variable \"city\" in prompt \"welcome\"")
            #expect(missing.json["error"]?["param"] == "variables.city")
            let noVariables = try await stack.call("POST", "/v1/prompts/welcome/completions", json: [:])
            #expect(noVariables.status == 400)
            #expect(noVariables.json["error"]?["message"]?.stringValue?.contains("\"name\"") == true)
            let unknown = try await stack.call("POST", "/v1/prompts/nope/completions", json: ["variables": [:]])
            #expect(unknown.status == 404)
            let traversal = try await stack.call("POST", "/v1/prompts/..%2Fsecret/completions", json: ["variables": [:]])
            #expect(traversal.status == 404)
            // Nothing was submitted for the rejected requests.
            #expect(try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="portkey"}"#) == submittedBefore)
        }
    }

    // MARK: Smarter passthrough

    @Test func passthroughAnswersTheProvidersOwnResponse() async throws {
        try await TestStack.with(gateway: true, configure: { $0.gateway.apiKeys = [.init(key: "k-pass", tenant: "t")] }) { stack in
            let auth: HTTPHeaders = ["authorization": "Bearer k-pass"]
            let body: JSONValue = ["model": "mock-7", "messages": [["role": "user", "content": "raw body"]], "n": 1]
            let answer = try await stack.call("POST", "/api/v1/prompts/passthrough/mock/", headers: auth, json: body)
            #expect(answer.status == 200)
            let r = answer.json
            // The provider's own chat.completion, not the unified response.
            #expect(r["object"] == "chat.completion")
            #expect(r["model"] == "mock-7")
            #expect(r["job_id"] == nil)
            #expect(r["metrics"] == nil)
            #expect(r["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue?.isEmpty == false)
            let jobID = try #require(answer.headers["x-sluice-job-id"])
            let sent = try await stack.events(of: jobID).first { $0["event"] == "chat_completion_request" }
            #expect(sent?["data"]?["body"] == body)

            // Smarter's own token scheme works too; without the trailing slash as well.
            var streamBody = body.objectValue ?? [:]
            streamBody["stream"] = true
            let streamed = try await stack.call("POST", "/api/v1/prompts/passthrough/mock", headers: ["authorization": "Token k-pass"], json: .object(streamBody))
            #expect(streamed.status == 200)
            #expect(streamed.headers["content-type"] == "text/event-stream")
            #expect(streamed.events.last?.data == "[DONE]")
            #expect(streamed.events.dropLast().allSatisfy { $0.data.contains("chat.completion.chunk") })

            let unknown = try await stack.call("POST", "/api/v1/prompts/passthrough/nope/", headers: auth, json: body)
            #expect(unknown.status == 404)
            let notObject = try await stack.call("POST", "/api/v1/prompts/passthrough/mock/", headers: auth, json: ["just", "a", "list"])
            #expect(notObject.status == 400)
            let notJSON = try await stack.call("POST", "/api/v1/prompts/passthrough/mock/", headers: auth, body: Array("model=x".utf8))
            #expect(notJSON.status == 400)
            let noKey = try await stack.call("POST", "/api/v1/prompts/passthrough/mock/", json: body)
            #expect(noKey.status == 403)
            let badKey = try await stack.call("POST", "/api/v1/prompts/passthrough/mock/", headers: ["authorization": "Bearer k-wrong"], json: body)
            #expect(badKey.status == 403)
            #expect(!badKey.text.contains("k-wrong"))
            #expect(badKey.json["error"]?["type"] == "permission_error")
        }
    }

    // MARK: Job API

    @Test func deleteProducesACancelMessage() async throws {
        let keys: [SluiceConfig.APIKey] = [.init(key: "k-a", tenant: "a"), .init(key: "k-b", tenant: "b")]
        try await TestStack.with(
            mock: MockBehavior(chunks: 40, chunkDelay: .milliseconds(100)), gateway: true, configure: { $0.gateway.apiKeys = keys }
        ) { stack in
            let control = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.controlTopic, logger: TestServices.logger)
            defer { control.close() }
            let a: HTTPHeaders = ["authorization": "Bearer k-a"]
            let accepted = try await stack.call("POST", "/v1/jobs", headers: a, json: ["model": "default", "chat_input": "a long one"])
            #expect(accepted.status == 202)
            let id = try #require(accepted.json["id"]?.stringValue)

            let otherTenant = try await stack.call("DELETE", "/v1/jobs/\(id)", headers: ["authorization": "Bearer k-b"])
            #expect(otherTenant.status == 404)
            let unknown = try await stack.call("DELETE", "/v1/jobs/no-such-job", headers: a)
            #expect(unknown.status == 404)
            let noKey = try await stack.call("DELETE", "/v1/jobs/\(id)")
            #expect(noKey.status == 401)

            let cancelled = try await stack.call("DELETE", "/v1/jobs/\(id)", headers: a)
            #expect(cancelled.status == 202)
            #expect(cancelled.json == ["id": .string(id), "status": "cancelling"])
            let messages = try await control.waitForDistinctKeys(1, timeout: .seconds(20))
            let message = try #require(messages.first)
            #expect(message.keyString == id)
            let cancel = try JSON.decode(JSONValue.self, from: message.value)
            #expect(cancel["type"] == "cancel")
            #expect(cancel["job_id"] == .string(id))
            #expect(cancel["tenant"] == "a")
            #expect(cancel["submission_id"]?.stringValue?.isEmpty == false)
            try await SchemaValidator.expectValid([("control", try JSON.decode(JSONValue.self, from: message.value))])
            let status = try await stack.call("GET", "/v1/jobs/\(id)", headers: a).json["status"]?.stringValue
            #expect(["cancelling", "cancelled"].contains(status ?? ""), "\(status ?? "nil")")
            #expect(try await stack.metric(#"sluice_gateway_jobs_cancelled_total{reason="delete"}"#) == 1)
        }
    }

    @Test func aJobIsVisibleOnlyToItsTenant() async throws {
        let keys: [SluiceConfig.APIKey] = [.init(key: "k-alpha", tenant: "alpha"), .init(key: "k-beta", tenant: "beta")]
        try await TestStack.with(gateway: true, configure: { $0.gateway.apiKeys = keys }) { stack in
            let alpha: HTTPHeaders = ["authorization": "Bearer k-alpha"]
            let beta: HTTPHeaders = ["authorization": "Bearer k-beta"]
            let accepted = try await stack.call("POST", "/v1/jobs", headers: alpha, json: ["model": "default", "chat_input": "mine"])
            #expect(accepted.status == 202)
            let id = try #require(accepted.json["id"]?.stringValue)
            let own = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: alpha)
            #expect(own.status == 200)
            #expect(own.events.last?.event == "chat_finished")
            #expect(try await stack.call("GET", "/v1/jobs/\(id)", headers: alpha).json["status"] == "succeeded")

            // Another tenant gets exactly what a job that does not exist gets.
            for (method, path) in [("GET", "/v1/jobs/\(id)"), ("GET", "/v1/jobs/\(id)/events"), ("DELETE", "/v1/jobs/\(id)")] {
                let other = try await stack.call(method, path, headers: beta)
                let none = try await stack.call(method, path.replacingOccurrences(of: id, with: "no-such-job"), headers: beta)
                #expect(other.status == 404, "\(method) \(path)")
                #expect(other.json["error"]?["type"] == none.json["error"]?["type"])
            }
            // A completion endpoint's job belongs to its key's tenant as well.
            let completion = try await stack.call("POST", "/v1/chat/completions", headers: ["x-portkey-api-key": "k-beta"], json: [
                "model": "default", "messages": Self.user,
            ])
            #expect(completion.status == 200)
            let betaJob = try #require(completion.json["job_id"]?.stringValue)
            #expect(try await stack.call("GET", "/v1/jobs/\(betaJob)", headers: alpha).status == 404)
            #expect(try await stack.call("GET", "/v1/jobs/\(betaJob)", headers: beta).status == 200)

            // Keys are required everywhere but the operational routes, and never echoed.
            for path in ["/v1/jobs/\(id)", "/v1/providers"] {
                let missing = try await stack.call("GET", path)
                #expect(missing.status == 401)
                #expect(missing.json["error"]?["type"] == "authentication_error")
                let wrong = try await stack.call("GET", path, headers: ["authorization": "Bearer k-not-a-key"])
                #expect(wrong.status == 401)
                #expect(!wrong.text.contains("k-not-a-key"))
            }
            for path in ["/healthz", "/readyz", "/openapi.json", "/docs"] {
                #expect(try await stack.call("GET", path).status == 200, "\(path)")
            }
            // Metrics are for operators: the admin key, not a tenant's.
            #expect(try await stack.call("GET", "/metrics").status == 401)
            #expect(try await stack.call("GET", "/metrics", headers: alpha).status == 401)
            #expect(try await stack.call("GET", "/metrics", headers: TestStack.admin).status == 200)
            let noKeyCompletion = try await stack.call("POST", "/v1/chat/completions", json: ["model": "default", "messages": Self.user])
            #expect(noKeyCompletion.status == 401)
        }
    }

    // MARK: Operations and description

    @Test func operationalRoutesAndProviders() async throws {
        try await TestStack.with(gateway: true, configure: { config in
            config.providers.append(.init(name: "remote", kind: .openaiCompatible, baseURL: "http://127.0.0.1:9/v1", apiKeyEnv: "SLUICE_TEST_NO_SUCH_KEY"))
        }) { stack in
            #expect(try await stack.call("GET", "/healthz").json == ["status": "ok"])
            let ready = try await stack.call("GET", "/readyz", headers: TestStack.admin)
            #expect(ready.status == 200)
            #expect(ready.json["checks"]?["kafka"]?["ok"] == true)
            #expect(ready.json["checks"]?["redis"]?["ok"] == true)
            // Without the admin key: ready or not, nothing more.
            #expect(try await stack.call("GET", "/readyz").json == ["status": "ready"])

            let providers = try await stack.call("GET", "/v1/providers")
            #expect(providers.status == 200)
            let list = try #require(providers.json["data"]?.arrayValue)
            #expect(list.compactMap { $0["name"]?.stringValue } == ["mock", "remote"])
            #expect(list.allSatisfy { Set($0.objectValue?.keys ?? [:].keys) == ["name", "kind"] })
            #expect(list.last?["kind"] == "openai-compatible")
            #expect(!providers.text.contains("SLUICE_TEST_NO_SUCH_KEY"))
            #expect(!providers.text.contains("127.0.0.1"), "no base URL")

            _ = try await stack.call("POST", "/v1/chat/completions", json: ["model": "default", "messages": Self.user])
            _ = try await stack.call("POST", "/v1/chat/completions", json: ["model": "default"])
            let metrics = try await stack.call("GET", "/metrics", headers: TestStack.admin)
            #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
            #expect(try await stack.metric(#"sluice_gateway_requests_total{route="/v1/chat/completions",method="POST",status="200"}"#) == 1)
            #expect(try await stack.metric(#"sluice_gateway_requests_total{route="/v1/chat/completions",method="POST",status="400"}"#) == 1)
            #expect(try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="openai"}"#) == 1)
            #expect(try await stack.metric("sluice_gateway_sse_readers") == 0)
        }
    }

    @Test func readinessSaysWhatIsNotReachable() async throws {
        var config = SluiceConfig()
        config.kafka.brokers = "127.0.0.1:9"  // nothing listens there
        config.redis.url = try TestServices.redisURL()
        config.gateway.listen = "127.0.0.1:0"
        let http = CurlClient(logger: TestServices.logger)
        defer { http.shutdown() }
        try await withGatewayOnly(config) { base in
            let ready = try await http.get(base + "/readyz")
            #expect(ready.status == 503)
            #expect(ready.json["status"] == "unavailable")
            #expect(ready.json["checks"]?["kafka"]?["ok"] == false)
            #expect(ready.json["checks"]?["kafka"]?["error"]?.stringValue?.isEmpty == false)
            #expect(ready.json["checks"]?["redis"]?["ok"] == true)
            #expect(try await http.get(base + "/healthz").status == 200)
        }
        // With an admin key configured, what is down and why is for its holder only.
        config.gateway.adminKey = "k-admin"
        try await withGatewayOnly(config) { base in
            let plain = try await http.get(base + "/readyz")
            #expect(plain.status == 503)
            #expect(plain.json == ["status": "unavailable"])
            let detailed = try await http.get(base + "/readyz", headers: ["authorization": "Bearer k-admin"])
            #expect(detailed.json["checks"]?["kafka"]?["ok"] == false)
        }
    }

    /// A batch that opens a thousand streams at once must not overflow the listen queue:
    /// each SYN the kernel drops costs its client a 1 s retransmit (Hummingbird's default
    /// backlog, 256, did that in the bench). `ss` shows a listener's backlog as Send-Q.
    @Test func listensWithABacklogForBursts() async throws {
        var config = SluiceConfig()
        config.kafka.brokers = "127.0.0.1:9"
        config.redis.url = try TestServices.redisURL()
        config.gateway.listen = "127.0.0.1:0"
        try await withGatewayOnly(config) { base in
            let port = try #require(base.split(separator: ":").last)
            let ss = try await Command.run(["/usr/bin/env", "ss", "-Hltn", "sport = :\(port)"])
            let fields = ss.text.split(whereSeparator: \.isWhitespace)
            // State Recv-Q Send-Q Local Peer; the kernel caps the backlog at net.core.somaxconn.
            let backlog = try #require(fields.count >= 3 ? Int(fields[2]) : nil, "ss said: \(fields)")
            let somaxconn = Int((try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 4096
            #expect(backlog >= min(4096, somaxconn))
        }
    }

    /// A gateway that is told to stop ends its event streams at once (their readers
    /// resume elsewhere with Last-Event-ID) instead of waiting for their jobs.
    @Test(.timeLimit(.minutes(1))) func shuttingDownEndsEventStreams() async throws {
        var config = SluiceConfig()
        config.kafka.brokers = try TestServices.brokers()
        config.redis.url = try TestServices.redisURL()
        config.gateway.listen = "127.0.0.1:0"
        let redis = RedisConnection(configuration: try RedisConfiguration(url: config.redis.url), logger: TestServices.logger)
        defer { redis.shutdown() }
        let id = "never-runs-\(UUID().uuidString.prefix(8))"
        _ = try await redis.execute([RedisCommand("HSET", RedisKeys.meta(id), "tenant", "default"), RedisCommand("EXPIRE", RedisKeys.meta(id), "60")])
        let http = CurlClient(logger: TestServices.logger)
        defer { http.shutdown() }

        var reading: Task<[SSEEvent], any Error>?
        var stopping = ContinuousClock.now
        try await withGatewayOnly(config) { base in
            let response = try await http.execute(CurlRequest(method: "GET", url: base + "/v1/jobs/\(id)/events"))
            #expect(response.status == 200)
            let reader = EventStreamReader(response: response)
            reading = Task { try await reader.rest() }
            try await Task.sleep(for: .milliseconds(200))
            stopping = ContinuousClock.now
        }
        // The shutdown itself, not the start: a stream left open would hold it much longer.
        #expect(ContinuousClock.now - stopping < .seconds(10))
        let events = try await #require(reading).value
        #expect(events.isEmpty)
    }

    /// A streamed completion whose job is still running ends too when the gateway is told
    /// to stop: an error line naming where the result will be, then `[DONE]`; the job is
    /// not cancelled (the gateway's going is not the client's).
    @Test(.timeLimit(.minutes(1))) func shuttingDownEndsCompletionStreamsAndLeavesTheirJobs() async throws {
        var config = SluiceConfig()
        config.kafka.brokers = try TestServices.brokers()
        config.redis.url = try TestServices.redisURL()
        config.gateway.listen = "127.0.0.1:0"
        let suffix = UUID().uuidString.prefix(8).lowercased()
        config.kafka.requestsTopic = "shutdown-requests-\(suffix)"
        config.kafka.controlTopic = "shutdown-control-\(suffix)"
        try KafkaAdmin.createTopics(brokers: config.kafka.brokers, topics: [(config.kafka.requestsTopic, 1), (config.kafka.controlTopic, 1)])
        config.providers = [.init(name: "mock", kind: .mock, baseURL: "http://127.0.0.1:9/v1")]
        config.models = ["default": ModelTarget(provider: "mock", model: "mock-1")]
        let http = CurlClient(logger: TestServices.logger)
        defer { http.shutdown() }

        let lag = { (topic: String) in
            try KafkaAdmin.groupLag(brokers: config.kafka.brokers, group: "nobody-\(suffix)", topic: topic, logger: TestServices.logger).values.reduce(0, +)
        }
        var reading: Task<(Int, [SSEEvent]), any Error>?
        var stopping = ContinuousClock.now
        try await withGatewayOnly(config) { base in
            // No worker runs: the job stays in its topic, and the stream holds its status
            // for the provider's answer (up to the first keep-alive, 15 s).
            let body = try JSON.encode(["model": "default", "stream": true, "messages": Self.user] as JSONValue)
            reading = Task {
                let response = try await http.execute(CurlRequest(
                    method: "POST", url: base + "/v1/chat/completions", headers: ["content-type": "application/json"], body: body))
                return (response.status, try await EventStreamReader(response: response).rest())
            }
            // The gateway stops once the job is in its topic.
            for _ in 0..<200 where try lag(config.kafka.requestsTopic) == 0 {
                try await Task.sleep(for: .milliseconds(50))
            }
            stopping = ContinuousClock.now
        }
        // The shutdown itself: a stream left holding its status would keep it 15 s and more.
        #expect(ContinuousClock.now - stopping < .seconds(10))
        let (status, events) = try await #require(reading).value
        #expect(status == 200)
        let texts = events.map { String(decoding: $0.bytes, as: UTF8.self) }
        #expect(texts.count == 2, "\(texts)")
        #expect(texts.first?.contains("shutting down") == true && texts.first?.contains("/v1/jobs/") == true, "\(texts)")
        #expect(texts.last == "[DONE]")
        // The body (and any cancel it would send) ended before the gateway stopped.
        #expect(try lag(config.kafka.requestsTopic) == 1, "the job was submitted")
        #expect(try lag(config.kafka.controlTopic) == 0, "and not cancelled")
    }

    @Test func theOpenAPIDocumentDescribesEveryRoute() async throws {
        try await TestStack.with(gateway: true) { stack in
            let answer = try await stack.call("GET", "/openapi.json")
            #expect(answer.status == 200)
            let doc = answer.json
            #expect(doc["openapi"]?.stringValue?.hasPrefix("3.1") == true)
            let paths = try #require(doc["paths"]?.objectValue)
            func normalized(_ path: String) -> String { path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path }
            var described = Set<String>()
            for (path, item) in paths {
                for method in ["get", "post", "put", "patch", "delete"] {
                    guard let op = item[method] else { continue }
                    described.insert("\(method.uppercased()) \(normalized(path))")
                    let responses = try #require(op["responses"]?.objectValue, "\(method) \(path)")
                    #expect(!responses.isEmpty)
                    for (_, response) in responses {
                        let r = try resolve(response, in: doc)
                        #expect(r["description"]?.stringValue != nil, "\(method) \(path)")
                    }
                    let successes = responses.filter { $0.key.hasPrefix("2") }.map { try? resolve($0.value, in: doc) }
                    #expect(successes.contains { $0?["content"]?.objectValue?.isEmpty == false }, "\(method) \(path) has no response schema")
                    if method == "post" {
                        let schema = op["requestBody"]?["content"]?["application/json"]?["schema"]
                        #expect(schema != nil, "\(method) \(path) has no request schema")
                    }
                    // Every path parameter is declared.
                    let declared = Set(((item["parameters"]?.arrayValue ?? []) + (op["parameters"]?.arrayValue ?? [])).compactMap { $0["name"]?.stringValue })
                    for piece in path.split(separator: "/") where piece.hasPrefix("{") {
                        #expect(declared.contains(String(piece.dropFirst().dropLast())), "\(path)")
                    }
                }
            }
            // Every $ref resolves.
            for ref in refs(in: doc) { #expect((try? resolve(["$ref": .string(ref)], in: doc)) != nil, "\(ref)") }

            let gateway = try Gateway(config: stack.config, logger: TestServices.logger)
            defer { gateway.shutdown() }
            let routed = Set(gateway.buildRouter().routes.map { "\($0.method.rawValue) \(normalized($0.path.description))" })
            #expect(routed == described, "routes without a description: \(routed.subtracting(described)); described but not routed: \(described.subtracting(routed))")

            // /docs is one self-contained page: the description inline, nothing fetched.
            let docs = try await stack.call("GET", "/docs")
            #expect(docs.status == 200)
            #expect(docs.headers["content-type"]?.hasPrefix("text/html") == true)
            #expect(docs.text.contains(#"id="spec""#))
            #expect(docs.text.contains("createChatCompletion"))
            #expect(!docs.text.contains("<script src"))
            #expect(!docs.text.contains("<link"))
            #expect(!docs.text.contains("https://"))
        }
    }

    // MARK: Streams

    @Test func lastEventIDResumesALiveStreamExactly() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 30, chunkDelay: .milliseconds(40)), gateway: true) { stack in
            let id = try #require(try await stack.call("POST", "/v1/jobs", json: ["model": "default", "chat_input": "resume me"]).json["id"]?.stringValue)
            let first = try await stack.openStream("/v1/jobs/\(id)/events")
            #expect(first.status == 200)
            var seen: [SSEEvent] = []
            while let e = try await first.next() {
                seen.append(e)
                if e.event == "chunk", Int(e.id ?? "") ?? 0 >= 8 { break }
            }
            first.close()
            let lastID = try #require(seen.last?.id)
            // The job is still running: the rest must come live.
            #expect(try await stack.call("GET", "/v1/jobs/\(id)").json["status"] == "running")
            let last = try #require(Int(lastID))
            try await stack.eventually("events are published while away") { try await stack.events(of: id).count >= last + 3 }

            let second = try await stack.openStream("/v1/jobs/\(id)/events", headers: ["last-event-id": lastID])
            let rest = try await second.rest()
            let all = seen + rest
            #expect(all.map(\.id) == (1...all.count).map { "\($0)" }, "no gap, no repeat")
            #expect(rest.first?.id == "\(Int(lastID)! + 1)")
            #expect(all.last?.event == "chat_finished")
            let stored = try await stack.events(of: id)
            #expect(all.map(\.event) == stored.map { $0["event"]?.stringValue })
            #expect(try all.map { try JSON.decode(JSONValue.self, from: Array($0.data.utf8)) } == stored)

            // ?last_event_id= for clients that cannot set headers; a bad one is a 400.
            let byQuery = try await stack.call("GET", "/v1/jobs/\(id)/events?last_event_id=\(all.count - 2)")
            #expect(byQuery.events.map(\.id) == ["\(all.count - 1)", "\(all.count)"])
            #expect(try await stack.call("GET", "/v1/jobs/\(id)/events", headers: ["last-event-id": "soon"]).status == 400)
        }
    }

    /// A reader resuming at or after a job's last event has everything: its stream ends at
    /// once when the job has finished, and when the job finishes when it has not.
    @Test func resumingAfterTheLastEventEndsTheStream() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 10, chunkDelay: .milliseconds(100)), gateway: true) { stack in
            let id = try #require(try await stack.call("POST", "/v1/jobs", json: ["model": "default", "chat_input": "resume at the end"]).json["id"]?.stringValue)
            // Running: a reader past the end waits for the job, then ends with nothing.
            let early = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: ["last-event-id": "9007199254740991"])
            #expect(early.status == 200)
            #expect(early.events.isEmpty)
            #expect(try await stack.call("GET", "/v1/jobs/\(id)").json["status"] == "succeeded")

            // Finished: at once, for the last seq and beyond it.
            let last = try await stack.events(of: id).count
            for resume in [last, last + 1, 9_007_199_254_740_991] {
                let start = ContinuousClock.now
                let answer = try await stack.call("GET", "/v1/jobs/\(id)/events?last_event_id=\(resume)")
                #expect(answer.status == 200)
                #expect(answer.events.isEmpty, "after \(resume)")
                #expect(ContinuousClock.now - start < .seconds(5), "after \(resume)")
            }
            #expect(try await stack.call("GET", "/v1/jobs/\(id)/events?last_event_id=\(last - 1)").events.map(\.event) == ["chat_finished"])
        }
    }

    @Test func aDisconnectingReaderFreesItsSubscriptionAtOnce() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 200, chunkDelay: .milliseconds(50)), gateway: true) { stack in
            let id = try #require(try await stack.call("POST", "/v1/jobs", json: ["model": "default", "chat_input": "long"]).json["id"]?.stringValue)
            let reader = try await stack.openStream("/v1/jobs/\(id)/events")
            _ = try await reader.next()
            _ = try await reader.next()
            #expect(try await stack.subscribers(ofJob: id) == 1)
            #expect(try await stack.metric("sluice_gateway_sse_readers") == 1)
            reader.close()
            try await stack.eventually("the subscription is freed", timeout: .seconds(2)) { try await stack.subscribers(ofJob: id) == 0 }
            try await stack.eventually("the reader gauge drops", timeout: .seconds(2)) { try await stack.metric("sluice_gateway_sse_readers") == 0 }
            // Following a job's events does not cancel it.
            #expect(try await stack.call("GET", "/v1/jobs/\(id)").json["status"] == "running")
        }
    }

    @Test func aCompletionClientThatLeavesCancelsItsJob() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 200, chunkDelay: .milliseconds(50)), gateway: true) { stack in
            let control = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.controlTopic, logger: TestServices.logger)
            defer { control.close() }
            // Streaming.
            let reader = try await stack.openStream("/v1/chat/completions", method: "POST", json: ["model": "default", "messages": Self.user, "stream": true])
            #expect(reader.status == 200)
            let streamJob = try #require(reader.response.headers["x-sluice-job-id"])
            _ = try await reader.next()
            #expect(try await stack.subscribers(ofJob: streamJob) == 1)
            reader.close()
            try await stack.eventually("the subscription is freed", timeout: .seconds(2)) { try await stack.subscribers(ofJob: streamJob) == 0 }

            // Not streaming: the client gives up while waiting. The job's id is read from
            // this test's own requests topic.
            let requests = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.requestsTopic, logger: TestServices.logger)
            defer { requests.close() }
            let waiting = Task { try await stack.call("POST", "/v1/chat/completions", json: ["model": "default", "messages": Self.user]) }
            let submitted = try await requests.waitForDistinctKeys(2, timeout: .seconds(20))
            let plain = try #require(submitted.compactMap(\.keyString).first { $0 != streamJob })
            try await stack.eventually("the waiting request subscribes", timeout: .seconds(5)) { try await stack.subscribers(ofJob: plain) == 1 }
            waiting.cancel()
            _ = try? await waiting.value
            try await stack.eventually("the subscription is freed", timeout: .seconds(2)) { try await stack.subscribers(ofJob: plain) == 0 }

            let messages = try await control.waitForDistinctKeys(2, timeout: .seconds(20))
            #expect(Set(messages.compactMap(\.keyString)) == [streamJob, plain])
            #expect(try await stack.metric(#"sluice_gateway_jobs_cancelled_total{reason="disconnect"}"#) == 2)
        }
    }

    @Test func cancelOnDisconnectCanBeTurnedOff() async throws {
        try await TestStack.with(
            mock: MockBehavior(chunks: 100, chunkDelay: .milliseconds(50)), gateway: true, configure: { $0.gateway.cancelOnDisconnect = false }
        ) { stack in
            let reader = try await stack.openStream("/v1/chat/completions", method: "POST", json: ["model": "default", "messages": Self.user, "stream": true])
            let job = try #require(reader.response.headers["x-sluice-job-id"])
            _ = try await reader.next()
            reader.close()
            // The stream's reader is counted out after its end was handled (where a
            // disconnect would cancel the job).
            try await stack.eventually("the stream has ended", timeout: .seconds(2)) { try await stack.metric("sluice_gateway_sse_readers") == 0 }
            #expect(try await stack.subscribers(ofJob: job) == 0)
            #expect(try await stack.metric(#"sluice_gateway_jobs_cancelled_total{reason="disconnect"}"#) == nil)
            #expect(try await stack.call("GET", "/v1/jobs/\(job)").json["status"] == "running")
        }
    }

    @Test func twoHundredConcurrentReadersEachGetTheirWholeStream() async throws {
        let readers = 200
        // Each job streams for about two seconds, so the readers are live at once.
        try await TestStack.with(
            maxInFlight: readers + 8, mock: MockBehavior(chunks: 20, chunkDelay: .milliseconds(100)), gateway: true,
            configure: { $0.gateway.maxReadersPerTenant = readers }
        ) { stack in
            let ids = try await withThrowingTaskGroup(of: String.self) { group in
                for i in 0..<readers {
                    group.addTask {
                        let answer = try await stack.call("POST", "/v1/jobs", json: ["model": "default", "chat_input": .string("reader \(i)")])
                        return try #require(answer.json["id"]?.stringValue)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let peak = Mutex(0.0)
            let sampler = Task {
                while !Task.isCancelled {
                    if let n = try? await stack.metric("sluice_gateway_sse_readers") { peak.withLock { $0 = max($0, n) } }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            let streams = try await withThrowingTaskGroup(of: (String, [SSEEvent]).self) { group in
                for id in ids {
                    group.addTask { (id, try await stack.openStream("/v1/jobs/\(id)/events").rest()) }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            sampler.cancel()
            #expect(peak.withLock { $0 } >= Double(readers / 2), "readers open at once: \(peak.withLock { $0 })")
            #expect(streams.count == readers)
            for (id, events) in streams {
                #expect(events.map(\.id) == (1...max(1, events.count)).map { "\($0)" }, "\(id)")
                #expect(events.filter { $0.event == "chunk" }.count >= 20, "\(id)")
                #expect(events.last?.event == "chat_finished", "\(id)")
            }
            // And their subscriptions are all gone.
            try await stack.eventually("every subscription is freed", timeout: .seconds(5)) {
                let reply = try await stack.redis.execute(RedisCommand((["PUBSUB", "NUMSUB"] + ids.map { RedisKeys.channel($0) }).map { Array($0.utf8) }))
                let counts = (reply.array ?? []).enumerated().filter { $0.offset % 2 == 1 }.compactMap { $0.element.int }
                return counts.count == ids.count && counts.allSatisfy { $0 == 0 }
            }
            #expect(try await stack.metric("sluice_gateway_sse_readers") == 0)
        }
    }

    // MARK: Real clients

    /// The `openai` and `portkey-ai` SDKs from PyPI (installed by `make setup` into
    /// .deps/python-clients) and a plain Python SSE reader, against the gateway.
    @Test func realClientsFromPyPI() async throws {
        let prompts = try JobKindTests.promptsDir()
        try await TestStack.with(
            mock: MockBehavior(chunks: 16, chunkDelay: .milliseconds(20)), gateway: true,
            configure: { $0.promptsDir = prompts; $0.gateway.apiKeys = [.init(key: "k-python", tenant: "py")] }
        ) { stack in
            let url = try #require(stack.gatewayURL)
            for script in ["openai_client.py", "portkey_client.py", "sse_resume.py"] {
                let run = try await PythonClient.run(script, environment: ["SLUICE_GATEWAY_URL": url, "SLUICE_API_KEY": "k-python"])
                #expect(run.status == 0, "\(script) failed:\n\(run.output)")
                #expect(run.output.contains(" OK"), "\(script):\n\(run.output)")
            }
        }
    }
}

/// Follows `$ref`s within the document.
private func resolve(_ value: JSONValue, in doc: JSONValue) throws -> JSONValue {
    var value = value
    var hops = 0
    while let ref = value["$ref"]?.stringValue {
        hops += 1
        guard hops < 20, ref.hasPrefix("#/") else { throw TestFailure("bad $ref \(ref)") }
        var node = doc
        for key in ref.dropFirst(2).split(separator: "/") {
            guard let next = node[String(key)] else { throw TestFailure("unresolved $ref \(ref)") }
            node = next
        }
        value = node
    }
    return value
}

private func refs(in value: JSONValue) -> [String] {
    switch value {
    case .object(let o): return (o["$ref"]?.stringValue.map { [$0] } ?? []) + o.values.flatMap(refs)
    case .array(let a): return a.flatMap(refs)
    default: return []
    }
}
