import Foundation
import SluiceCore
import Testing

@Suite struct BatchFormatTests {
    func parse(_ line: String) throws -> BatchFormat.Request {
        try BatchFormat.parseRequest(Array(line.utf8))
    }

    func reason(_ line: String) -> String? {
        do {
            _ = try parse(line)
            return nil
        } catch let e as SluiceError {
            return e.message
        } catch {
            return "\(error)"
        }
    }

    @Test func anOpenAIBatchLineBecomesANonStreamingJob() throws {
        let request = try parse("""
            {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "You are helpful."},
                      {"role": "user", "content": "Hello world!"}], "max_tokens": 1000, "temperature": 0.2}}
            """)
        #expect(request.customID == "request-1")
        let (job, value) = try BatchFormat.job(request, id: "batch-abc-request-1", defaultProvider: "openai")
        #expect(job.id == "batch-abc-request-1")
        #expect(job.stream == false)
        #expect(job.provider == "openai")
        #expect(job.model == "gpt-4o-mini")
        #expect(job.parameters["max_tokens"] == 1000)
        #expect(job.parameters["temperature"] == 0.2)
        #expect(value["id"] == "batch-abc-request-1")
        #expect(value["stream"] == false)
        #expect(value["messages"]?.arrayValue?.count == 2)
    }

    @Test func theBodyDecidesStreamingAndProvider() throws {
        let request = try parse(#"{"custom_id": "s", "method": "POST", "url": "/v1/chat/completions", "body": {"provider": "mock", "model": "m", "stream": true, "chat_input": "hi"}}"#)
        let (job, _) = try BatchFormat.job(request, id: "x", defaultProvider: "openai")
        #expect(job.stream)
        #expect(job.provider == "mock")
        let legacy = try parse(#"{"custom_id": "s", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "is_stream": true, "chat_input": "hi"}}"#)
        #expect(try BatchFormat.job(legacy, id: "x").0.stream)
    }

    @Test func badLinesSayWhatIsWrong() {
        let url = BatchFormat.chatCompletionsURL
        #expect(reason("nope") == "not a JSON object")
        #expect(reason("[1]") == "expected a JSON object, got an array")
        #expect(reason(#"{"method": "POST", "url": "\#(url)", "body": {}}"#) == #"missing "custom_id""#)
        #expect(reason(#"{"custom_id": 7, "method": "POST", "url": "\#(url)", "body": {}}"#)?.contains("non-empty string") == true)
        #expect(reason(#"{"custom_id": "", "method": "POST", "url": "\#(url)", "body": {}}"#)?.contains("non-empty string") == true)
        #expect(reason(#"{"custom_id": "a", "url": "\#(url)", "body": {}}"#)?.contains(#"missing "method""#) == true)
        #expect(reason(#"{"custom_id": "a", "method": "GET", "url": "\#(url)", "body": {}}"#)?.contains(#"only "POST""#) == true)
        #expect(reason(#"{"custom_id": "a", "method": "POST", "body": {}}"#)?.contains(#"missing "url""#) == true)
        #expect(reason(#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}"#)?.contains(#"only "/v1/chat/completions""#) == true)
        #expect(reason(#"{"custom_id": "a", "method": "POST", "url": "\#(url)"}"#)?.contains(#"missing "body""#) == true)
        #expect(reason(#"{"custom_id": "a", "method": "POST", "url": "\#(url)", "body": "x"}"#)?.contains("must be an object") == true)

        // The body is checked as the worker would check the job.
        let noMessages = try! parse(#"{"custom_id": "a", "method": "POST", "url": "\#(url)", "body": {"model": "m"}}"#)
        #expect(throws: SluiceError.self) { try BatchFormat.job(noMessages, id: "x") }
        let badMessages = try! parse(#"{"custom_id": "a", "method": "POST", "url": "\#(url)", "body": {"model": "m", "messages": [{"content": "no role"}]}}"#)
        do {
            _ = try BatchFormat.job(badMessages, id: "x")
            Issue.record("a message without a role was accepted")
        } catch let e as SluiceError {
            #expect(e.message == #"body: messages[0] has no "role""#)
        } catch {
            Issue.record("\(error)")
        }
    }

    func response(status: UnifiedResponse.Status, error: UnifiedResponse.ErrorInfo? = nil) -> UnifiedResponse {
        UnifiedResponse(
            id: "chatcmpl-1", created: 0, model: "m", choices: [], usage: nil, systemFingerprint: nil, sessionID: nil,
            chatInput: nil, chatOutput: nil, context: [], provider: "p", timestamp: 0, parameters: [:],
            metrics: JobMetrics(inputTokens: 1, outputTokens: 2, totalTokens: 3, costUSD: nil, latencyS: 0.1,
                             timeToFirstTokenS: nil, interTokenLatencyS: nil, tokensPerSecond: nil, queueWaitS: nil,
                             attempts: 1, usageSource: .provider, streamComplete: true),
            jobID: "j", status: status, error: error, metadata: .null)
    }

    @Test func statusCodesFitTheFailure() {
        #expect(BatchFormat.statusCode(response(status: .succeeded)) == 200)
        #expect(BatchFormat.statusCode(response(status: .failed, error: .init(type: "provider_error", message: "", providerStatus: 429))) == 429)
        #expect(BatchFormat.statusCode(response(status: .failed, error: .init(type: "provider_error", message: "", providerStatus: 200))) == 502)
        #expect(BatchFormat.statusCode(response(status: .failed, error: .init(type: "connection_error", message: ""))) == 502)
        #expect(BatchFormat.statusCode(response(status: .failed, error: .init(type: "unknown_model", message: ""))) == 404)
        #expect(BatchFormat.statusCode(response(status: .failed, error: .init(type: "missing_variable", message: ""))) == 400)
        #expect(BatchFormat.statusCode(response(status: .failed, error: .init(type: "unsupported", message: ""))) == 501)
        #expect(BatchFormat.statusCode(response(status: .failed, error: .init(type: "internal_error", message: ""))) == 500)
        #expect(BatchFormat.statusCode(response(status: .timedOut, error: .init(type: "timeout", message: ""))) == 504)
        #expect(BatchFormat.statusCode(response(status: .cancelled, error: .init(type: "cancelled", message: ""))) == 499)
        #expect(BatchFormat.error(response(status: .succeeded)) == nil)
        #expect(BatchFormat.error(response(status: .failed, error: .init(type: "provider_error", message: "boom")))! == ("provider_error", "boom"))
        #expect(BatchFormat.error(response(status: .timedOut))! == ("timed_out", "the job ended timed_out"))
    }

    @Test func outputLinesAreOneLineOfOpenAIsShapeAndReadBack() throws {
        let body = Array("{\n  \"object\": \"chat.completion\",\n  \"text\": \"a\\nb\"\n}".utf8)
        let line = BatchFormat.render(
            requestID: "batch_req_0123", customID: "tricky \"id\"\n", jobID: "batch-x-1", statusCode: 200, body: body, error: nil)
        #expect(line.last == 0x0A)
        #expect(line.dropLast().contains(0x0A) == false, "one line")
        let v = try JSON.decode(JSONValue.self, from: line)
        #expect(v["id"] == "batch_req_0123")
        #expect(v["custom_id"] == "tricky \"id\"\n")
        #expect(v["response"]?["status_code"] == 200)
        #expect(v["response"]?["request_id"] == "batch-x-1")
        #expect(v["response"]?["body"]?["text"] == "a\nb")
        #expect(v["error"] == .null)
        #expect(BatchFormat.customID(ofOutputLine: line.dropLast()) == "tricky \"id\"\n")

        let failed = BatchFormat.render(
            requestID: "batch_req_1", customID: "plain", jobID: "j", statusCode: 400, body: nil, error: ("invalid_job", "bad"))
        let f = try JSON.decode(JSONValue.self, from: failed)
        #expect(f["response"]?["body"] == .null)
        #expect(f["error"] == ["code": "invalid_job", "message": "bad"])
        #expect(BatchFormat.customID(ofOutputLine: failed.dropLast()) == "plain")
    }

    @Test func customIDsAreReadFromLinesOfOtherLayoutsToo() {
        // Rewritten by another tool (keys reordered, spaces): parsed in full.
        #expect(BatchFormat.customID(ofOutputLine: Array(#"{"custom_id": "x-1", "id": "batch_req_9", "response": null, "error": null}"#.utf8)) == "x-1")
        #expect(BatchFormat.customID(ofOutputLine: Array(#"{"id":"batch_req_1","custom_id":"ab"#.utf8)) == nil, "torn")
        #expect(BatchFormat.customID(ofOutputLine: Array("garbage".utf8)) == nil)
        #expect(BatchFormat.customID(ofOutputLine: Array(#"{"id": "batch_req_1"}"#.utf8)) == nil)
    }
}
