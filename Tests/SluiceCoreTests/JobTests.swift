import Foundation
import SluiceCore
import Testing

@Suite struct JobParsingTests {
    func parse(_ json: String, key: String? = nil) throws -> Job {
        try Job.parse(Array(json.utf8), key: key)
    }

    @Test func fullOpenAIShapedJob() throws {
        let job = try parse("""
            {"id": "job-123", "provider": "openai", "model": "gpt-4o-mini",
             "messages": [{"role": "user", "content": "Hello! Who are you?"}],
             "parameters": {"temperature": 0.7, "max_tokens": 256}, "stream": true, "session_id": "s-1",
             "tenant": "t1", "metadata": {"any": "json"}, "timeout_s": 120,
             "fallbacks": [{"provider": "anthropic", "model": "claude-3-5-haiku-latest"}], "api_key": "sk-secret"}
            """)
        #expect(job.id == "job-123")
        #expect(job.provider == "openai")
        #expect(job.model == "gpt-4o-mini")
        #expect(job.request == .messages([["role": "user", "content": "Hello! Who are you?"]]))
        #expect(job.parameters["temperature"] == .number(0.7))
        #expect(job.parameters["max_tokens"] == .number(256))
        #expect(job.stream)
        #expect(job.sessionID == "s-1")
        #expect(job.tenant == "t1")
        #expect(job.metadata == ["any": "json"])
        #expect(job.timeoutSeconds == 120)
        #expect(job.fallbacks == [ModelTarget(provider: "anthropic", model: "claude-3-5-haiku-latest")])
        #expect(job.apiKey?.value == "sk-secret")
        #expect("\(job.apiKey!)" == "<redacted>")
    }

    @Test func idFallsBackToKeyThenUUID() throws {
        let body = #"{"chat_input": "hi", "model": "default"}"#
        #expect(try parse(body, key: "from-key").id == "from-key")
        let generated = try parse(body).id
        #expect(UUID(uuidString: generated) != nil)
    }

    @Test func llmstudioChatInputAndIsStream() throws {
        let job = try parse(#"{"chat_input": "Hello", "model": "gpt-4o", "is_stream": false, "parameters": {"temperature": 1}}"#)
        #expect(job.request == .chatInput("Hello"))
        #expect(job.stream == false)
        #expect(job.parameters["temperature"] == .number(1))
    }

    @Test func streamDefaultsToTrue() throws {
        #expect(try parse(#"{"chat_input": "x"}"#).stream)
    }

    @Test func topLevelHyperparametersAreCollectedAndParametersWin() throws {
        let job = try parse(#"{"messages": [{"role":"user","content":"x"}], "temperature": 0.1, "top_p": 0.5, "parameters": {"temperature": 0.9}, "tools": [{"type":"function"}]}"#)
        #expect(job.parameters["temperature"] == .number(0.9))
        #expect(job.parameters["top_p"] == .number(0.5))
        #expect(job.parameters["tools"] == [["type": "function"]])
    }

    @Test func promptAndPassthroughShapes() throws {
        let prompt = try parse(#"{"prompt_id": "welcome", "variables": {"name": "Ada"}}"#)
        #expect(prompt.request == .prompt(id: "welcome", variables: ["name": "Ada"]))
        let pass = try parse(#"{"provider": "openai", "passthrough": true, "body": {"model": "gpt-4o", "messages": []}}"#)
        guard case .passthrough(let body) = pass.request else { Issue.record("not passthrough"); return }
        #expect(body["model"] == "gpt-4o")
    }

    @Test(arguments: [
        ("not json", "not valid JSON"),
        ("[1,2]", "must be a JSON object"),
        (#"{"model": "x"}"#, "has no request"),
        (#"{"messages": "hi"}"#, "\"messages\" must be an array"),
        (#"{"messages": []}"#, "\"messages\" is empty"),
        (#"{"messages": [{"content": "x"}]}"#, "messages[0] has no \"role\""),
        (#"{"chat_input": 5}"#, "\"chat_input\" must be a string"),
        (#"{"chat_input": "x", "messages": [{"role":"user","content":"y"}]}"#, "give exactly one request shape"),
        (#"{"chat_input": "x", "timeout_s": -1}"#, "\"timeout_s\" must be a number of seconds greater than 0 and at most 86400"),
        (#"{"chat_input": "x", "stream": "maybe"}"#, "\"stream\" must be a boolean"),
        (#"{"passthrough": true}"#, "needs \"body\""),
    ])
    func invalidJobsNameTheProblem(input: String, expected: String) {
        do {
            _ = try parse(input)
            Issue.record("parsed \(input)")
        } catch let error as SluiceError {
            #expect(error.code == .invalidJob)
            #expect(error.message.contains(expected), "\(error.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func encodedRoundTripsAndCanDropTheSecret() throws {
        let job = try parse(#"{"id": "j", "chat_input": "x", "api_key": "sk-1", "metadata": {"a": 1}}"#)
        let again = try Job.parse(job.encoded())
        #expect(again.id == "j")
        #expect(again.request == .chatInput("x"))
        #expect(again.apiKey?.value == "sk-1")
        #expect(try Job.parse(job.encoded(includeSecret: false)).apiKey == nil)
    }
}
