import Foundation
import SluiceCore
import SluiceHTTPClient
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Extreme values sent to every route of a real `sluice gateway` process: each answer is
/// a 4xx naming the problem, and the process is alive after each one.
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct HostileInputTests {
    struct Case: Sendable, CustomStringConvertible {
        var method: String
        var path: String
        var headers: [(String, String)] = []
        var body: String = ""
        /// Text the answer's `param` or `message` must contain.
        var names: [String]

        var description: String { "\(method) \(path) \(headers.map { "\($0.0): \($0.1)" }) \(body.prefix(120))" }
    }

    static func nested(_ levels: Int, around inner: String = "1") -> String {
        String(repeating: "[", count: levels) + inner + String(repeating: "]", count: levels)
    }

    static let cases: [Case] = {
        let job = #""model": "default", "chat_input": "hi""#
        let chat = #""model": "default", "messages": [{"role": "user", "content": "hi"}]"#
        var cases: [Case] = []
        func jobs(_ fields: String, _ names: String...) {
            cases.append(Case(method: "POST", path: "/v1/jobs", body: "{\(job), \(fields)}", names: names))
        }
        jobs(#""timeout_s": 1e17"#, "timeout_s")
        jobs(#""timeout_s": 1e308"#, "timeout_s")
        jobs(#""timeout_s": -1"#, "timeout_s")
        jobs(#""timeout_s": 1e999"#, "timeout_s", "not valid JSON")
        jobs(#""timeout_s": "NaN""#, "timeout_s")
        jobs(#""temperature": 1e308"#, "temperature")
        jobs(#""parameters": {"temperature": -1e-300}"#, "temperature")
        jobs(#""max_tokens": 1e308"#, "max_tokens")
        jobs(#""max_tokens": -1"#, "max_tokens")
        jobs(#""max_tokens": 9223372036854775808"#, "max_tokens")
        jobs(#""n": 1e9"#, #""n""#)
        jobs(#""seed": "NaN""#, "seed")
        jobs(#""top_p": "Infinity""#, "top_p")
        jobs(#""id": "../x""#, "id")
        jobs(#""id": "a b""#, "id")
        jobs(#""id": "\#(String(repeating: "x", count: 200))""#, "id")
        jobs(#""fallbacks": [{"model": "a"}, {"model": "a"}, {"model": "a"}, {"model": "a"}, {"model": "a"}, {"model": "a"}]"#, "fallbacks")
        jobs(#""metadata": \#(nested(100))"#, "metadata")
        jobs(#""metadata": \#(nested(100_000))"#, "not valid JSON")
        jobs(#""api_key": "sk-x\r\nx-injected: 1""#, "api_key")

        func openai(_ fields: String, _ names: String...) {
            cases.append(Case(method: "POST", path: "/v1/chat/completions", body: "{\(chat), \(fields)}", names: names))
        }
        openai(#""temperature": 1e308"#, "temperature")
        openai(#""max_tokens": 9223372036854775808"#, "max_tokens")
        openai(#""top_logprobs": -1"#, "top_logprobs")
        openai(#""tools": [{"type": "function", "function": \#(nested(100))}]"#, "tools")
        cases.append(Case(method: "POST", path: "/v1/chat/completions",
                          body: #"{"model": "default", "messages": [{"role": "user", "content": \#(nested(100))}]}"#, names: ["messages"]))

        let llmstudio = "/api/engine/chat/mock"
        cases.append(Case(method: "POST", path: llmstudio, body: #"{"model": "m", "chat_input": "x", "parameters": {"temperature": 1e308}}"#, names: ["temperature"]))
        cases.append(Case(method: "POST", path: llmstudio, body: #"{"model": "m", "chat_input": "x", "parameters": {"max_tokens": 1e17}}"#, names: ["max_tokens"]))
        cases.append(Case(method: "POST", path: llmstudio, body: #"{"model": "m", "chat_input": "x", "parameters": "{\"n\": 1e300}"}"#, names: [#""n""#]))

        let portkey = "/v1/prompts/welcome/completions"
        cases.append(Case(method: "POST", path: portkey, body: #"{"variables": {"name": "a", "city": "b"}, "temperature": 1e308}"#, names: ["temperature"]))
        cases.append(Case(method: "POST", path: portkey, body: #"{"variables": {"name": "a", "city": "b", "x": \#(nested(100))}}"#, names: ["variables"]))

        cases.append(Case(method: "POST", path: "/api/v1/prompts/passthrough/mock/", body: #"{"model": "m", "messages": \#(nested(100))}"#, names: ["body"]))

        cases.append(Case(method: "GET", path: "/v1/jobs/a%20b", names: ["id"]))
        cases.append(Case(method: "GET", path: "/v1/jobs/\(String(repeating: "x", count: 200))", names: ["id"]))
        cases.append(Case(method: "GET", path: "/v1/jobs/%2E%2E", names: ["id"]))
        cases.append(Case(method: "DELETE", path: "/v1/jobs/a%0Ab", names: ["id"]))
        cases.append(Case(method: "GET", path: "/v1/jobs/a*b/events", names: ["id"]))
        for value in ["9223372036854775807", "99999999999999999999999", "-1", "NaN", "1e308", "0x10"] {
            cases.append(Case(method: "GET", path: "/v1/jobs/alive-1/events", headers: [("Last-Event-ID", value)], names: ["Last-Event-ID"]))
        }
        for value in ["9223372036854775807", "-5", "1e308"] {
            cases.append(Case(method: "GET", path: "/v1/jobs/alive-1/events?last_event_id=\(value)", names: ["last_event_id"]))
        }
        return cases
    }()

    @Test func extremeValuesOnEveryRouteAre4xxNamingTheProblemAndTheGatewayLives() async throws {
        let prompts = try JobKindTests.promptsDir()
        try await TestStack.with(worker: false, configure: { $0.promptsDir = prompts }) { stack in
            let dir = try TestPaths.tempDir("hostile")
            defer { try? FileManager.default.removeItem(at: dir) }
            var config = stack.config
            let port = TestPaths.freePort()
            config.gateway.listen = "127.0.0.1:\(port)"
            let log = dir.appendingPathComponent("gateway.log").path
            let gateway = try await TestProcess(
                try TestPaths.sluiceBinary(), ["gateway", "--config", try TestPaths.writeConfig(config, to: dir), "--log-level", "warning"],
                log: log)
            defer { gateway.signal(SIGKILL) }
            let base = "http://127.0.0.1:\(port)"
            func send(_ method: String, _ path: String, headers: [(String, String)] = [], body: String = "") async throws -> (Int, JSONValue) {
                var h = HTTPHeaders()
                for (name, value) in headers { h.add(name: name, value: value) }
                if !body.isEmpty { h.add(name: "content-type", value: "application/json") }
                let response = try await stack.http.execute(CurlRequest(
                    method: method, url: base + path, headers: h, body: Array(body.utf8), totalTimeout: .seconds(30)))
                let bytes = try await response.body.collect(upTo: 1 << 20)
                return (response.status, (try? JSON.decode(JSONValue.self, from: bytes)) ?? .string(String(decoding: bytes, as: UTF8.self)))
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while (try? await send("GET", "/healthz"))?.0 != 200 {
                guard ContinuousClock.now < deadline else { throw TestFailure("the gateway did not answer /healthz; see \(log)") }
                try await Task.sleep(for: .milliseconds(50))
            }

            // A job that exists, so the event routes get past the lookup to the header.
            let (status, accepted) = try await send("POST", "/v1/jobs", body: #"{"id": "alive-1", "model": "default", "chat_input": "hi", "timeout_s": 86400, "max_tokens": 2147483647}"#)
            #expect(status == 202, "\(accepted)")

            #expect(Self.cases.count > 40)
            for c in Self.cases {
                do {
                    let (status, answer) = try await send(c.method, c.path, headers: c.headers, body: c.body)
                    #expect((400..<500).contains(status), "\(c): \(status) \(answer)")
                    let said = (answer["error"]?["param"]?.stringValue ?? "") + " " + (answer["error"]?["message"]?.stringValue ?? "")
                    #expect(c.names.contains { said.contains($0) }, "\(c): \(said) names none of \(c.names)")
                    #expect(!said.contains("sk-x"), "the key is never echoed")
                } catch {
                    Issue.record("\(c): \(error)")
                }
                let exit = await gateway.wait(timeout: .milliseconds(1))
                try #require(exit == nil, "the gateway exited (\(exit ?? -1)) after \(c); see \(log)")
            }

            // Still serving.
            #expect(try await send("GET", "/healthz").0 == 200)
            #expect(try await send("GET", "/v1/jobs/alive-1").0 == 200)
        }
    }
}
