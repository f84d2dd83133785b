import Foundation
import SluiceCore
import SluiceKafka
import SluiceMockProvider
import SluiceRedis
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Everything at once: jobs streaming through several worker processes while workers are
/// killed with SIGKILL, new ones join (rebalances), Redis restarts and poison records
/// arrive. Then every job must have a succeeded result, the group must have no lag,
/// every job's replay stream must be gap-free and from one run, and no worker may have
/// died of a poison record.
///
/// `make test` runs it with 150 jobs; `make chaos` with 500 (`SLUICE_CHAOS_JOBS`). It
/// prints its figures (the README's "Guarantees" quotes the last full run).
@Suite(.needsServices, .serialized, .timeLimit(.minutes(8)))
struct ChaosTests {
    @Test func jobsSurviveKillsRebalancesARedisRestartAndPoison() async throws {
        let jobCount = ProcessInfo.processInfo.environment["SLUICE_CHAOS_JOBS"].flatMap(Int.init) ?? 150
        let dir = try TestPaths.tempDir("chaos")
        // A Redis of its own (restarted mid-run), with an append-only file so that what
        // it had survives the restart, as in a production deployment.
        let redisPort = TestPaths.freePort()
        let redisArgs = ["--port", "\(redisPort)", "--bind", "127.0.0.1", "--dir", dir.path, "--save", "",
                         "--appendonly", "yes", "--appendfsync", "always"]
        let redisLog = dir.appendingPathComponent("redis.log").path
        var redis: TestProcess? = try await TestProcess("/usr/bin/redis-server", redisArgs, log: redisLog)
        defer { redis?.signal(SIGKILL) }
        try await waitUntilListening(port: redisPort)

        try await TestStack.with(
            mock: MockBehavior(chunks: 10, chunkDelay: .milliseconds(60)), worker: false,
            configure: {
                $0.redis.url = "redis://127.0.0.1:\(redisPort)"
                $0.worker.maxInFlight = 40
                $0.worker.drainSeconds = 5
            }
        ) { stack in
            let configPath = try TestPaths.writeConfig(stack.config, to: dir)
            let binary = try TestPaths.sluiceBinary()
            var workerNumber = 0
            func startWorker() async throws -> TestProcess {
                workerNumber += 1
                let log = dir.appendingPathComponent("worker-\(workerNumber).log").path
                return try await TestProcess(binary, ["worker", "--config", configPath, "--log-level", "warning"], log: log)
            }
            let started = ContinuousClock.now
            var workers = [try await startWorker(), try await startWorker()]
            var killed = 0

            // Jobs and poison, submitted over a few seconds while the faults happen.
            let ids = (0..<jobCount).map { "chaos-\($0)" }
            let poison: [(key: String?, value: [UInt8])] = [
                (nil, Array("{\"api_key\": \"sk-chaos-secret\", broken".utf8)),
                ("p-deep", Array((String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)).utf8)),
                ("p-huge-timeout", Array(#"{"id":"p-huge-timeout","model":"default","chat_input":"hi","timeout_s":1e17}"#.utf8)),
                ("p-huge-tokens", Array(#"{"id":"p-huge-tokens","model":"default","chat_input":"hi","max_tokens":1e308}"#.utf8)),
                ("p-types", Array(#"{"id":"p-types","model":7,"messages":"no"}"#.utf8)),
                (nil, [0xff, 0xfe, 0x00, 0x01]),
            ]
            let submitter = Task {
                for (i, id) in ids.enumerated() {
                    try await stack.submit(["id": .string(id), "model": "default", "chat_input": .string("chaos job \(i)")])
                    if i % (max(1, jobCount / poison.count)) == 0, i / max(1, jobCount / poison.count) < poison.count {
                        let p = poison[i / max(1, jobCount / poison.count)]
                        try await stack.submitRaw(p.value, key: p.key)
                    }
                    try await Task.sleep(for: .milliseconds(8_000 / jobCount))
                }
            }

            try await Task.sleep(for: .seconds(2))
            workers.append(try await startWorker())  // a join: partitions move
            try await Task.sleep(for: .seconds(3))
            workers[0].signal(SIGKILL)  // a crash with jobs in flight
            #expect(await workers[0].wait() == 128 + SIGKILL)
            killed += 1
            try await Task.sleep(for: .seconds(1))
            redis?.signal(SIGTERM)  // Redis restarts; what it had is in its append-only file
            _ = await redis?.wait()
            try await Task.sleep(for: .seconds(1))
            redis = try await TestProcess("/usr/bin/redis-server", redisArgs, log: redisLog)
            try await waitUntilListening(port: redisPort)
            try await Task.sleep(for: .seconds(2))
            workers.append(try await startWorker())
            try await Task.sleep(for: .seconds(2))
            workers[1].signal(SIGKILL)
            #expect(await workers[1].wait() == 128 + SIGKILL)
            killed += 1
            try await submitter.value

            // Every job gets a result.
            var results: [String: UnifiedResponse] = [:]
            let expected = Set(ids + ["p-huge-timeout", "p-huge-tokens"])
            let deadline = ContinuousClock.now + .seconds(300)
            while !expected.isSubset(of: Set(results.keys)), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                results = [:]
                for m in stack.results.all {
                    if let key = m.keyString, let r = try? JSON.decode(UnifiedResponse.self, from: m.value) { results[key] = r }
                }
            }
            let survivors = Array(workers[2...])
            for (i, w) in survivors.enumerated() {
                let exited = await w.wait(timeout: .zero)
                #expect(exited == nil, "worker \(i + 3) died (exit \(exited.map(String.init) ?? "?")): see \(dir.path)")
            }
            for id in ids {
                #expect(results[id]?.status == .succeeded, "job \(id): \(results[id].map { "\($0.status)" } ?? "no result")")
            }
            // Out-of-range values are failed results naming the field, not crashes.
            for id in ["p-huge-timeout", "p-huge-tokens"] {
                #expect(results[id]?.status == .failed, "\(id) should fail as invalid, got \(results[id].map { "\($0.status)" } ?? "nothing")")
            }
            let resultMessages = stack.results.all.filter { ids.contains($0.keyString ?? "") }
            let everyResultSucceeded = resultMessages.allSatisfy {
                (try? JSON.decode(UnifiedResponse.self, from: $0.value))?.status == .succeeded
            }
            #expect(everyResultSucceeded, "a redelivered job produced a non-succeeded result")

            // The group's offsets reach the end of every partition.
            var lag: [Int32: Int64] = [:]
            for _ in 0..<100 {
                lag = try KafkaAdmin.groupLag(brokers: stack.config.kafka.brokers, group: stack.config.kafka.groupID,
                                              topic: stack.config.kafka.requestsTopic, logger: TestServices.logger)
                if lag.values.allSatisfy({ $0 == 0 }) { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(!lag.isEmpty && lag.values.allSatisfy { $0 == 0 }, "lag at the end: \(lag)")

            // Each replay stream: one run, seqs consecutive, ending with chat_finished.
            var mixed: [String] = []
            for id in ids {
                let events = try await stack.events(of: id)
                let runs = Set(events.compactMap { $0["run"]?.stringValue })
                let seqs = events.compactMap { $0["seq"]?.doubleValue.map(Int.init) }
                let consecutive = !seqs.isEmpty && zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }
                if runs.count != 1 || !consecutive || events.last?["event"]?.stringValue != "chat_finished" {
                    mixed.append("\(id): runs \(runs.sorted()), seqs \(seqs.first ?? -1)...\(seqs.last ?? -1) (\(seqs.count))")
                }
            }
            #expect(mixed.isEmpty, "replay streams not from one run or with gaps: \(mixed.prefix(5))")

            let requests = stack.mock.stats.snapshot.requests
            let duplicates = resultMessages.count - ids.count
            let seconds = (ContinuousClock.now - started).components.seconds
            print("""
                chaos: \(ids.count) jobs, \(poison.count) poison records, \(workers.count) worker processes started, \
                \(killed) killed with SIGKILL, 1 Redis restart; \(ids.count - mixed.count) of \(ids.count) succeeded \
                with a one-run gap-free replay; \(duplicates) duplicate results; \(requests) provider requests \
                (\(requests - ids.count) repeated); lag 0: \(lag.values.allSatisfy { $0 == 0 }); \(seconds) s
                """)

            for w in survivors {
                w.signal(SIGTERM)
                #expect(await w.wait(timeout: .seconds(30)) == 0)
            }
        }
    }
}
