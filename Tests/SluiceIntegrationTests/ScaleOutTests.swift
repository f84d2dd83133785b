import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceMockProvider
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Scale-out on one machine: three `sluice worker` processes in one group share the
/// partitions; one is stopped mid-run; every job's result still arrives.
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct ScaleOutTests {
    @Test func threeWorkerProcessesShareTheWorkAndOneLeavingLosesNothing() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 10, chunkDelay: .milliseconds(100)), worker: false, configure: {
            $0.worker.maxInFlight = 10
            $0.worker.drainSeconds = 1
        }) { stack in
            let dir = try TestPaths.tempDir("scale")
            let configPath = try TestPaths.writeConfig(stack.config, to: dir)
            let binary = try TestPaths.sluiceBinary()
            let logs = (0..<3).map { dir.appendingPathComponent("worker-\($0).log").path }
            let metricsPorts = logs.map { _ in TestPaths.freePort() }
            var workers: [TestProcess] = []
            for (log, port) in zip(logs, metricsPorts) {
                workers.append(try await TestProcess(
                    binary, ["worker", "--config", configPath, "--log-level", "info", "--metrics-listen", "127.0.0.1:\(port)"], log: log))
            }
            defer { for w in workers { w.signal(SIGKILL) } }

            let ids = (0..<90).map { "scale-\($0)" }
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": .string(id)]) }
            // One leaves once the three have settled: a member leaving while a rebalance is
            // under way can wedge the test broker's group (README, "The local broker").
            try await Self.waitUntilSettled(metricsPorts, http: stack.http, partitions: 3)
            workers[0].signal(SIGTERM)
            #expect(await workers[0].wait() == 0)

            let results = try await stack.waitForResults(ids.count, timeout: .seconds(120), duplicates: .allowed)
            #expect(Set(results.keys) == Set(ids))
            #expect(results.values.allSatisfy { $0.status == .succeeded })
            // Each worker was given partitions at some point.
            for log in logs {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                #expect(text.contains("partitions assigned"), "\(log):\n\(text.suffix(2000))")
            }
            for w in workers.dropFirst() {
                w.signal(SIGTERM)
                #expect(await w.wait() == 0)
            }
        }
    }
}

extension ScaleOutTests {
    /// Waits until the worker processes whose metrics are on `ports` hold every partition
    /// of both lanes between them, each at least one (as `WorkerHandle.waitUntilSettled`
    /// for workers in this process).
    static func waitUntilSettled(_ ports: [Int], http: CurlClient, partitions: Int, timeout: Duration = .seconds(60)) async throws {
        let lanes = ["interactive", "batch"]
        func held(_ port: Int) async -> [Int] {
            let text = (try? await http.get("http://127.0.0.1:\(port)/metrics").text) ?? ""
            return lanes.map { lane in
                let prefix = #"sluice_worker_assigned_partitions{lane="\#(lane)"} "#
                return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }.map(Int.init) ?? 0
            }
        }
        let deadline = ContinuousClock.now + timeout
        while true {
            var perWorker: [[Int]] = []
            for port in ports { perWorker.append(await held(port)) }
            let settled = lanes.indices.allSatisfy { lane in
                let counts = perWorker.map { $0[lane] }
                return counts.reduce(0, +) == partitions && counts.allSatisfy { $0 > 0 }
            }
            if settled { return }
            guard ContinuousClock.now < deadline else {
                throw TestFailure("the group did not settle within \(timeout): partitions held (interactive, batch) \(perWorker)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

@Suite(.needsServices, .timeLimit(.minutes(2)))
struct WorkerMetricsTests {
    @Test func prometheusMetricsCountJobsTokensRetriesAndTheDLQ() async throws {
        try await TestStack.with(worker: false, configure: {
            $0.worker.maxAttempts = 2
            $0.pricing["mock/priced"] = .init(input: 1_000_000, output: 1_000_000)
        }) { stack in
            let worker = WorkerHandle(config: stack.config)
            try await stack.submit(["id": "m1", "model": "default", "chat_input": "x"])
            try await stack.submit(["id": "m2", "provider": "mock", "model": "priced", "chat_input": "x"])
            try await stack.submit(["id": "m3", "provider": "mock", "model": "m-status=503", "chat_input": "x"])
            try await stack.submitRaw(Array("nope".utf8), key: "m4")
            let results = try await stack.waitForResults(3, duplicates: .allowed)
            let text = String(decoding: worker.metrics.render(), as: UTF8.self)
            try await worker.stop()
            let m2 = try #require(results["m2"])
            #expect(text.contains(#"sluice_worker_jobs_total{status="succeeded",provider="mock"} 2"#), "\(text)")
            #expect(text.contains(#"sluice_worker_jobs_total{status="failed",provider="mock"} 1"#))
            #expect(text.contains(#"sluice_worker_retries_total{provider="mock"} 1"#))
            #expect(text.contains("sluice_worker_dlq_total 1"))
            #expect(text.contains("sluice_worker_jobs_in_flight 0"))
            #expect(text.contains(#"sluice_worker_assigned_partitions{lane="interactive"} 3"#), "the only member holds every partition")
            #expect(text.contains(#"sluice_worker_assigned_partitions{lane="batch"} 3"#))
            #expect(text.contains(#"sluice_worker_tokens_total{provider="mock",kind="output"}"#))
            #expect((m2.metrics.costUSD ?? 0) > 0)
            #expect(text.contains(#"sluice_worker_cost_usd_total{provider="mock"}"#))
            #expect(text.contains("sluice_worker_provider_latency_seconds_bucket"))
            #expect(text.contains("sluice_worker_time_to_first_token_seconds_count"))
        }
    }
}
