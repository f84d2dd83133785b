import Foundation
import SluiceCore
import SluiceMockProvider
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `sluice batch`, the real binary, against a stack of its own: the output's shape,
/// bad lines reported by number, resuming from a complete, a partial and an interrupted
/// output without running anything twice.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(5)))
struct BatchTests {
    static func request(_ customID: String, _ content: String, model: String = "default", provider: String? = nil) -> String {
        var body: JSONValue = ["model": .string(model), "messages": [["role": "user", "content": .string(content)]], "max_tokens": 16]
        if let provider, case .object(var o) = body {
            o["provider"] = .string(provider)
            body = .object(o)
        }
        let line: JSONValue = ["custom_id": .string(customID), "method": "POST", "url": "/v1/chat/completions", "body": body]
        return String(decoding: try! JSON.sortedEncoder.encode(line), as: UTF8.self)
    }

    struct Run {
        var code: Int32?
        var log: String
        var summary: JSONValue
    }

    /// Runs `sluice batch INPUT --output OUTPUT --json` and returns its exit code, what it
    /// printed, and the JSON summary (the line of stdout that starts with `{"batch_id"`).
    func batch(_ stack: TestStack, dir: URL, input: URL, output: URL, _ extra: [String] = [],
               whileRunning: (TestProcess) async throws -> Void = { _ in }) async throws -> Run {
        let configPath = try TestPaths.writeConfig(stack.config, to: dir)
        let log = dir.appendingPathComponent("batch-\(UUID().uuidString.prefix(6)).log")
        let process = try await TestProcess(
            try TestPaths.sluiceBinary(),
            ["batch", input.path, "--output", output.path, "--config", configPath, "--json", "--progress-interval", "1"] + extra,
            log: log.path)
        try await whileRunning(process)
        let code = await process.wait(timeout: .seconds(120))
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let summaryLine = text.split(separator: "\n").last { $0.hasPrefix(#"{"batch_id""#) }
        let summary = summaryLine.flatMap { try? JSON.decode(JSONValue.self, from: Array($0.utf8)) } ?? .null
        return Run(code: code, log: text, summary: summary)
    }

    func lines(_ url: URL) throws -> [String] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    func decoded(_ url: URL) throws -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for line in try lines(url) {
            let v = try JSON.decode(JSONValue.self, from: Array(line.utf8))
            let id = try #require(v["custom_id"]?.stringValue)
            #expect(out[id] == nil, "custom_id \(id) written twice")
            out[id] = v
        }
        return out
    }

    /// A batch larger than the provider's limit allows at once: every line succeeds in
    /// the batch lane, each job carries the completion window as its deadline, and the
    /// progress says the run is held by the limit.
    @Test func aBatchHeldByARateLimitSaysSoAndSucceeds() async throws {
        try await TestStack.with(rateLimit: MockRateLimit(rpm: 240, burst: 2), configure: { $0.providers[0].rpm = 240 }) { stack in
            let dir = try TestPaths.tempDir("batch-limit")
            let input = dir.appendingPathComponent("in.jsonl")
            let output = dir.appendingPathComponent("out.jsonl")
            let ids = (0..<24).map { "lim-\($0)" }
            try (ids.map { Self.request($0, "hello \($0)") }.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
            let before = Date().timeIntervalSince1970
            let run = try await batch(stack, dir: dir, input: input, output: output, ["--completion-window", "2h"])
            #expect(run.code == 0, "\(run.log)")
            let results = try decoded(output)
            #expect(Set(results.keys) == Set(ids))
            #expect(results.values.allSatisfy { $0["response"]?["status_code"]?.intValue == 200 })
            #expect(run.log.contains("held by provider rate limit"), "\(run.log)")
            #expect(stack.mock.stats.snapshot.rateLimited <= 2)

            // The jobs went to the batch lane, with the window's end as their deadline.
            let collector = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.batchRequestsTopic,
                                               logger: TestServices.logger)
            defer { collector.close() }
            let jobs = try await collector.waitForDistinctKeys(ids.count, timeout: .seconds(30))
            for m in jobs {
                let job = try Job.parse(m.value)
                #expect(job.priority == .batch)
                let deadline = try #require(job.deadline)
                #expect(abs(deadline - (before + 7200)) < 60, "deadline \(deadline), run began \(before)")
            }
        }
    }

    @Test func runsAFileReportsBadLinesAndResumesWithoutRunningAnythingTwice() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 4)) { stack in
            let dir = try TestPaths.tempDir("batch")
            let input = dir.appendingPathComponent("requests.jsonl")
            let output = dir.appendingPathComponent("results.jsonl")

            let good = (0..<12).map { "req-\($0)" }
            var text: [String] = good.map { Self.request($0, "question \($0)") }
            // Line numbers are 1-based; the bad lines go in between the good ones.
            text.insert("this is not JSON", at: 3)                                                        // line 4
            text.insert(Self.request("req-1", "the same custom_id again"), at: 6)                         // line 7
            text.insert(#"{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "default"}}"#, at: 8) // line 9
            text.insert(#"{"custom_id": "wrong-url", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m", "input": "x"}}"#, at: 10) // line 11
            text.insert(#"{"custom_id": "wrong-method", "method": "GET", "url": "/v1/chat/completions", "body": {}}"#, at: 12) // line 13
            text.insert(#"{"custom_id": "no-messages", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "default"}}"#, at: 14) // line 15
            text.append(Self.request("fails", "x", model: "m-status=400", provider: "mock"))               // line 19
            try (text.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
            let expectedIDs = Set(good + ["fails"])

            // First run: every valid, unique request once.
            let first = try await batch(stack, dir: dir, input: input, output: output)
            #expect(first.code == 0, "exit code; output:\n\(first.log)")
            let results = try decoded(output)
            #expect(Set(results.keys) == expectedIDs)
            #expect(stack.mock.stats.snapshot.requests == expectedIDs.count)
            for id in good {
                let r = try #require(results[id])
                #expect(r["id"]?.stringValue?.hasPrefix("batch_req_") == true)
                #expect(r["error"] == .null)
                let response = try #require(r["response"])
                #expect(response["status_code"] == 200)
                let jobID = try #require(response["request_id"]?.stringValue)
                #expect(jobID.hasPrefix("batch-") && jobID.hasSuffix("-\(id)"), "\(jobID)")
                let body = try #require(response["body"])
                #expect(body["object"] == "chat.completion")
                #expect(body["job_id"]?.stringValue == jobID)
                #expect(body["status"] == "succeeded")
                #expect(body["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue?.isEmpty == false)
                #expect(body["usage"]?["total_tokens"]?.intValue ?? 0 > 0)
                let metrics = try #require(body["metrics"])
                #expect(metrics["output_tokens"] == 4)
                #expect(metrics["total_tokens"]?.intValue == body["usage"]?["total_tokens"]?.intValue)
                #expect(metrics["latency_s"]?.doubleValue != nil)
                #expect(metrics["attempts"] == 1)
                #expect(body["context"]?.arrayValue?.first?["content"]?.stringValue == "question \(id)")
            }
            // Not streamed unless the body asks for it; and in the batch lane, with nobody
            // following, its reply is in its result, not in chunk events.
            let someJob = try #require(results["req-0"]?["response"]?["request_id"]?.stringValue)
            let events = try await stack.events(of: someJob)
            let request = try #require(events.first { $0["event"] == "chat_completion_request" })
            #expect(request["data"]?["body"]?["stream"] == false)
            #expect(!events.contains { $0["event"] == "chunk" }, "\(events.map { $0["event"] ?? .null })")
            let failed = try #require(results["fails"])
            #expect(failed["response"]?["status_code"] == 400)
            #expect(failed["response"]?["body"]?["status"] == "failed")
            #expect(failed["error"]?["code"] == "provider_error")
            #expect(failed["error"]?["message"]?.stringValue?.contains("400") == true)

            let s = first.summary
            #expect(s["outcome"] == "completed")
            #expect(s["succeeded"] == 12)
            #expect(s["failed"] == 1)
            #expect(s["skipped"] == 0)
            #expect(s["invalid"] == 5)
            #expect(s["duplicates"] == 1)
            #expect(s["invalid_lines"]?.arrayValue?.compactMap { $0["line"]?.intValue } == [4, 9, 11, 13, 15])
            #expect(s["duplicate_lines"] == [["line": 7, "custom_id": "req-1", "first_line": 2]])
            #expect(s["total_tokens"]?.intValue ?? 0 > 0)
            for n in [4, 9, 11, 13, 15] { #expect(first.log.contains("line \(n): invalid"), "line \(n) reported:\n\(first.log)") }
            #expect(first.log.contains(#"line 7: duplicate custom_id "req-1" (first on line 2)"#))

            // Second run, same output: nothing new is submitted, nothing written.
            let before = try Data(contentsOf: output)
            let second = try await batch(stack, dir: dir, input: input, output: output)
            #expect(second.code == 0, "\(second.log)")
            #expect(second.summary["skipped"]?.intValue == expectedIDs.count)
            #expect(second.summary["submitted"] == 0)
            #expect(try Data(contentsOf: output) == before)
            #expect(stack.mock.stats.snapshot.requests == expectedIDs.count)

            // A partial output (three lines gone): only those three run again.
            var kept = try lines(output)
            let removed = [kept.remove(at: 9), kept.remove(at: 4), kept.remove(at: 0)]
            let removedIDs = try removed.map { try #require(JSON.decode(JSONValue.self, from: Array($0.utf8))["custom_id"]?.stringValue) }
            try (kept.joined(separator: "\n") + "\n").write(to: output, atomically: true, encoding: .utf8)
            let third = try await batch(stack, dir: dir, input: input, output: output)
            #expect(third.code == 0, "\(third.log)")
            #expect(third.summary["submitted"]?.intValue == 3)
            #expect(third.summary["skipped"]?.intValue == expectedIDs.count - 3)
            #expect(stack.mock.stats.snapshot.requests == expectedIDs.count + 3)
            let after = try lines(output)
            #expect(Array(after.prefix(kept.count)) == kept, "the lines already there are left as they were")
            #expect(Set(try decoded(output).keys) == expectedIDs)
            #expect(Set(after.suffix(3).compactMap { try? JSON.decode(JSONValue.self, from: Array($0.utf8))["custom_id"]?.stringValue }) == Set(removedIDs))
        }
    }

    @Test func anInterruptedRunKeepsWhatItHadAndTheNextRunFinishesIt() async throws {
        // Each job takes about a second; two at a time.
        try await TestStack.with(mock: MockBehavior(chunks: 10, chunkDelay: .milliseconds(100))) { stack in
            let dir = try TestPaths.tempDir("batch-interrupt")
            let input = dir.appendingPathComponent("requests.jsonl")
            let output = dir.appendingPathComponent("results.jsonl")
            let ids = (0..<16).map { "q\($0)" }
            try (ids.map { Self.request($0, "slow \($0)") }.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)

            let first = try await batch(stack, dir: dir, input: input, output: output, ["--max-in-flight", "2"]) { process in
                for _ in 0..<600 {
                    if ((try? lines(output).count) ?? 0) >= 2 { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                process.signal(SIGINT)
            }
            #expect(first.code == 130, "\(first.log)")
            #expect(first.summary["outcome"] == "interrupted")
            #expect(first.summary["unfinished"] == 0, "the first Ctrl-C waits for the jobs in flight")
            let done = try decoded(output)
            #expect(done.count >= 2 && done.count < ids.count, "\(done.count) results after the interrupt")
            #expect(done.count == first.summary["succeeded"]?.intValue)

            // Simulate a write cut short, then resume.
            let handle = try FileHandle(forWritingTo: output)
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(#"{"id":"batch_req_x","custom_id":"q1"#.utf8))
            try handle.close()

            let second = try await batch(stack, dir: dir, input: input, output: output, ["--max-in-flight", "4"])
            #expect(second.code == 0, "\(second.log)")
            #expect(second.log.contains("cut short"))
            #expect(second.summary["skipped"]?.intValue == done.count)
            #expect(Set(try decoded(output).keys) == Set(ids))
            #expect(stack.mock.stats.snapshot.requests == ids.count, "every request ran exactly once")
        }
    }
}
