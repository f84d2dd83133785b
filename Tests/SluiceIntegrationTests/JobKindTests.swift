import Foundation
import SluiceCore
import Testing

/// Every request shape of a job (docs/contract.md, Jobs) through the whole pipeline.
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct JobKindTests {
    static func promptsDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-prompts-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try """
            provider: mock
            model: mock-1
            messages:
              - { role: system, content: "You greet people." }
              - { role: user, content: "Say hello to {{name}} from {{city}}." }
            parameters: { temperature: 0.2, max_tokens: 64 }
            """.write(to: dir.appendingPathComponent("welcome.yaml"), atomically: true, encoding: .utf8)
        return dir.path
    }

    @Test func templateChatInputAndPassthroughJobs() async throws {
        let prompts = try Self.promptsDir()
        try await TestStack.with(configure: { $0.promptsDir = prompts }) { stack in
            try await stack.submit(["id": "tpl", "prompt_id": "welcome", "variables": ["name": "Ada", "city": "London"],
                                    "max_tokens": 32])
            try await stack.submit(["id": "missing", "prompt_id": "welcome", "variables": ["name": "Ada"]])
            try await stack.submit(["id": "nofile", "prompt_id": "nope", "variables": [:]])
            try await stack.submit(["id": "ci", "model": "default", "chat_input": "Hello! Who are you?", "session_id": "s-9"])
            try await stack.submit(["id": "pass", "provider": "mock", "passthrough": true,
                                    "body": ["model": "mock-7", "messages": [["role": "user", "content": "raw body"]], "n": 1]])
            let results = try await stack.waitForResults(5)

            let tpl = try #require(results["tpl"])
            #expect(tpl.status == .succeeded)
            #expect(tpl.context == [["role": "system", "content": "You greet people."],
                                    ["role": "user", "content": "Say hello to Ada from London."]])
            #expect(tpl.chatInput == "Say hello to Ada from London.")
            #expect(tpl.provider == "mock")
            // The template's defaults, overridden by the request.
            #expect(tpl.parameters == ["temperature": 0.2, "max_tokens": 32])
            let sent = try await stack.events(of: "tpl").first { $0["event"] == "chat_completion_request" }
            #expect(sent?["data"]?["body"]?["max_tokens"] == 32)
            #expect(sent?["data"]?["body"]?["messages"]?.arrayValue?.count == 2)

            let missing = try #require(results["missing"])
            #expect(missing.status == .failed)
            #expect(missing.error?.type == "missing_variable")
            #expect(missing.error?.message == "missing variable \"city\" in prompt \"welcome\"")
            #expect(results["nofile"]?.error?.type == "unknown_prompt")

            let ci = try #require(results["ci"])
            #expect(ci.status == .succeeded)
            #expect(ci.chatInput == "Hello! Who are you?")
            #expect(ci.context == [["role": "user", "content": "Hello! Who are you?"]])
            #expect(ci.sessionID == "s-9")
            #expect(ci.chatOutput?.isEmpty == false)

            let pass = try #require(results["pass"])
            #expect(pass.status == .succeeded)
            // The provider's own response is kept, and the body went out as it was.
            #expect(pass.raw?["object"] == "chat.completion")
            #expect(pass.raw?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue == pass.chatOutput)
            #expect(pass.model == "mock-7")
            #expect(pass.metrics.latencyS > 0)
            let passSent = try await stack.events(of: "pass").first { $0["event"] == "chat_completion_request" }
            #expect(passSent?["data"]?["body"] == ["model": "mock-7", "messages": [["role": "user", "content": "raw body"]], "n": 1])
        }
    }
}

@Suite(.needsServices, .timeLimit(.minutes(3)))
struct SchemaConformanceTests {
    /// Real messages of a run (jobs, every event, results, DLQ records, a control
    /// message) validate against `schemas/`.
    @Test func everyMessageOfARunValidates() async throws {
        let prompts = try JobKindTests.promptsDir()
        try await TestStack.with(configure: { $0.promptsDir = prompts }) { stack in
            let dlq = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.dlqTopic, logger: TestServices.logger)
            defer { dlq.close() }
            let jobs: [JSONValue] = [
                ["id": "s-msg", "model": "default", "messages": [["role": "user", "content": "hi"]], "temperature": 0.3, "metadata": ["k": "v"]],
                ["id": "s-ci", "model": "default", "chat_input": "hello", "is_stream": false, "session_id": "s"],
                ["id": "s-tpl", "prompt_id": "welcome", "variables": ["name": "A", "city": "B"]],
                ["id": "s-missing", "prompt_id": "welcome", "variables": [:]],
                ["id": "s-pass", "provider": "mock", "passthrough": true, "body": ["model": "m", "messages": [["role": "user", "content": "x"]]]],
                ["id": "s-unknown", "model": "nope/nope", "chat_input": "x", "fallbacks": [["provider": "mock", "model": "m2"]]],
            ]
            for job in jobs { try await stack.submit(job) }
            // Out of range: no valid job, but its failed result and events are valid messages.
            let invalid: JSONValue = ["id": "s-invalid", "model": "default", "chat_input": "x", "temperature": 5, "timeout_s": 1e17]
            try await stack.submit(invalid)
            try await stack.submitRaw(Array("{broken".utf8), key: "s-broken")
            let results = try await stack.waitForResults(jobs.count + 1)
            #expect(results["s-invalid"]?.error?.type == "invalid_job")
            let records = try await dlq.waitForDistinctKeys(1, timeout: .seconds(30))

            var documents: [(String, JSONValue)] = jobs.map { ("job", $0) }
            for (id, result) in results {
                documents.append(("result", try JSON.decode(JSONValue.self, from: try JSON.encode(result))))
                for event in try await stack.events(of: id) { documents.append(("event", event)) }
            }
            for r in records { documents.append(("dlq", try JSON.decode(JSONValue.self, from: r.value))) }
            documents.append(("control", ["type": "cancel", "job_id": "s-msg"]))
            #expect(documents.count > 40)
            try await SchemaValidator.expectValid(documents)

            // And the schemas reject what they should.
            let rejected: [(String, JSONValue)] = [("control", ["type": "pause", "job_id": "x"]), ("job", invalid),
                                                   ("job", ["id": "a b", "chat_input": "x"]),
                                                   ("event", ["job_id": "x", "seq": 0, "event": "chunk", "data": [:], "ts": 1])]
            for doc in rejected {
                try await SchemaValidator.expectRejected(doc)
            }
        }
    }
}
