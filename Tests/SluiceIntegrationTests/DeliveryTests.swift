import Foundation
import SluiceCore
import SluiceKafka
import SluiceMockProvider
import SluiceRedis
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// At-least-once end to end: workers killed, stopped, joining and leaving, jobs that run
/// long, Redis going away. Every job must end with a result on the topic.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(4)))
struct DeliveryTests {
    func jobs(_ prefix: String, _ n: Int) -> [String] { (0..<n).map { "\(prefix)-\($0)" } }

    @Test func aWorkerKilledWithHundredsInFlightLosesNoJob() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 20, chunkDelay: .milliseconds(100)), worker: false,
                                 configure: { $0.worker.maxInFlight = 500 }) { stack in
            let dir = try TestPaths.tempDir("sigkill")
            let configPath = try TestPaths.writeConfig(stack.config, to: dir)
            let binary = try TestPaths.sluiceBinary()
            let log = dir.appendingPathComponent("worker.log").path
            let first = try await TestProcess(binary, ["worker", "--config", configPath, "--log-level", "warning"], log: log)

            let ids = jobs("kill", 150)
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": .string("job \(id)")]) }
            // Wait until at least 100 provider streams are open, then kill the worker.
            var active = 0
            for _ in 0..<600 where active < 100 {
                active = stack.mock.stats.snapshot.activeStreams
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(active >= 100, "only \(active) jobs in flight")
            first.signal(SIGKILL)
            #expect(await first.wait() == 128 + SIGKILL)
            let before = Set(stack.results.all.compactMap(\.keyString))

            let second = try await TestProcess(binary, ["worker", "--config", configPath, "--log-level", "warning"], log: log)
            let results = try await stack.waitForResults(ids.count, timeout: .seconds(120), duplicates: .allowed)
            #expect(Set(results.keys) == Set(ids))
            #expect(results.values.allSatisfy { $0.status == .succeeded })
            #expect(before.count < ids.count, "the kill came before every job had finished")
            second.signal(SIGTERM)
            #expect(await second.wait() == 0, "a worker stopped with SIGTERM exits 0")
        }
    }

    @Test func gracefulShutdownFinishesJobsInFlightAndCommitsThem() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 10, chunkDelay: .milliseconds(150)), worker: false,
                                 configure: { $0.worker.drainSeconds = 30 }) { stack in
            // No commit while it runs: what is committed, the shutdown committed.
            let worker = WorkerHandle(config: stack.config, commitInterval: .seconds(3600))
            let ids = jobs("drain", 10)
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": "x"]) }
            for _ in 0..<400 where stack.mock.stats.snapshot.activeStreams < ids.count {
                try await Task.sleep(for: .milliseconds(25))
            }
            try await worker.stop()
            // Stopping waited for the jobs: their results are already on the topic.
            let results = try await stack.waitForResults(ids.count, timeout: .seconds(10))
            #expect(Set(results.keys) == Set(ids))
            #expect(results.values.allSatisfy { $0.status == .succeeded })

            // Their offsets were committed before it returned: the group has no lag.
            let lag = try await stack.waitForNoLag(timeout: .seconds(1))
            #expect(!lag.isEmpty && lag.values.allSatisfy { $0 == 0 }, "lag per partition after the drain: \(lag)")
            #expect(stack.results.all.count == ids.count, "\(stack.results.all.count) results for \(ids.count) jobs")
        }
    }

    @Test func jobsStillRunningWhenTheDrainTimeEndsAreRedelivered() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 40, chunkDelay: .milliseconds(100)), worker: false,
                                 configure: { $0.worker.drainSeconds = 0.5 }) { stack in
            let worker = WorkerHandle(config: stack.config)
            let ids = jobs("redo", 6)
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": "x"]) }
            for _ in 0..<400 where stack.mock.stats.snapshot.activeStreams < ids.count {
                try await Task.sleep(for: .milliseconds(25))
            }
            try await worker.stop()
            #expect(stack.results.all.isEmpty, "jobs cut by shutdown produce no result")
            // Nor an ending for their readers: no final event, no stored result.
            for id in ids {
                let names = try await stack.events(of: id).compactMap { $0["event"]?.stringValue }
                #expect(names.contains("chunk"), "\(id) had started streaming")
                #expect(!names.contains("chat_finished") && !names.contains("chat_response_failure"), "\(id): \(names.suffix(3))")
                let stored = try await stack.redis.execute(RedisCommand("GET", RedisKeys.result(id)))
                #expect(stored.isNull, "\(id) has a stored result after a drain")
            }

            let next = WorkerHandle(config: stack.config)
            let results = try await stack.waitForResults(ids.count, timeout: .seconds(60))
            try await next.stop()
            #expect(Set(results.keys) == Set(ids))
            #expect(results.values.allSatisfy { $0.status == .succeeded })
            // The run that took over replaced the cut-off run's replay, continuing its seq.
            for id in ids {
                let events = try await stack.events(of: id)
                let runs = Set(events.compactMap { $0["run"]?.stringValue })
                let seqs = events.compactMap { $0["seq"]?.doubleValue.map(Int.init) }
                #expect(runs.count == 1, "\(id): replay mixes runs \(runs)")
                #expect((seqs.first ?? 0) > 1, "\(id): seq continues after the cut-off run")
                #expect(zip(seqs, seqs.dropFirst()).allSatisfy { $1 == $0 + 1 }, "\(id): gap in \(seqs)")
                #expect(events.last?["event"]?.stringValue == "chat_finished")
            }
        }
    }

    @Test func aJobDeliveredTwiceRunsOnceAndItsResultIsProducedAgain() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 20, chunkDelay: .milliseconds(50))) { stack in
            // The same record twice (a redelivery), taken by one worker while the first
            // run is still streaming: the second waits for the first and answers with its
            // stored result.
            let job: JSONValue = ["id": "twice", "model": "default", "chat_input": "x"]
            try await stack.submit(job)
            try await stack.submit(job)
            var messages: [KafkaMessage] = []
            for _ in 0..<1200 {
                messages = stack.results.all.filter { $0.keyString == "twice" }
                if messages.count >= 2 { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(messages.count == 2)
            #expect(messages.first?.value == messages.last?.value, "the second is the stored result of the first")
            #expect(stack.mock.stats.snapshot.requests == 1, "the provider was called once")
            let events = try await stack.events(of: "twice")
            #expect(Set(events.compactMap { $0["run"]?.stringValue }).count == 1)
            #expect(events.compactMap { $0["seq"]?.doubleValue.map(Int.init) } == Array(1...events.count))
        }
    }

    @Test func aWorkerJoiningAndOneLeavingMidRunLoseNothing() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 8, chunkDelay: .milliseconds(100)), worker: false,
                                 configure: { $0.worker.maxInFlight = 8 }) { stack in
            let a = WorkerHandle(config: stack.config)
            let ids = jobs("rebal", 60)
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": "x"]) }
            // B joins mid-run: once A has finished a quarter of the jobs.
            _ = try await stack.waitForResults(ids.count / 4, timeout: .seconds(60), duplicates: .allowed)
            let b = WorkerHandle(config: stack.config)
            // A leaves once B's join has settled: a member leaving while a rebalance is under
            // way can wedge the test broker's group (README, "The local broker").
            try await WorkerHandle.waitUntilSettled([a, b], partitions: 3)
            #expect(b.metrics.assignedPartitions(.interactive) > 0)
            try await a.stop()
            let results = try await stack.waitForResults(ids.count, timeout: .seconds(90), duplicates: .allowed)
            try await b.stop()
            #expect(Set(results.keys) == Set(ids))
            #expect(results.values.allSatisfy { $0.status == .succeeded })
        }
    }

    @Test func aJobLongerThanThePollIntervalKeepsItsWorkerInTheGroup() async throws {
        // librdkafka evicts a consumer that does not poll for max.poll.interval.ms; the poll
        // loop never waits for a job, so a 12 s job under a 7 s limit is run once. With
        // `max_in_flight: 1` the job after it finds the worker full: the partitions are
        // paused for those 12 s, and the poll goes on.
        try await TestStack.with(maxInFlight: 1, configure: { $0.kafka.properties["max.poll.interval.ms"] = "7000" }) { stack in
            try await stack.submit(["id": "longpoll-long", "provider": "mock", "model": "m-chunks=12,delay=1000", "chat_input": "x"])
            try await stack.submit(["id": "longpoll-after", "provider": "mock", "model": "m", "chat_input": "x"])
            let results = try await stack.waitForResults(2, timeout: .seconds(60))
            #expect(results["longpoll-long"]?.status == .succeeded)
            #expect(results["longpoll-long"]?.metrics.attempts == 1)
            #expect(results["longpoll-after"]?.status == .succeeded)
            // Committed: neither can come back, and each ran once.
            let lag = try await stack.waitForNoLag()
            #expect(lag.values.allSatisfy { $0 == 0 }, "\(lag)")
            #expect(stack.results.all.count == 2, "a job delivered again after an eviction")
            #expect(stack.mock.stats.snapshot.requests == 2)
        }
    }

    @Test func redisGoingAwayDoesNotStopResultsAndEventsResume() async throws {
        let port = TestPaths.freePort()
        let dir = try TestPaths.tempDir("redis")
        let args = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        var redisServer: TestProcess? = try await TestProcess("/usr/bin/redis-server", args, log: dir.appendingPathComponent("redis.log").path)
        defer { redisServer?.signal(SIGKILL) }
        try await waitUntilListening(port: port)
        try await TestStack.with(configure: { $0.redis.url = "redis://127.0.0.1:\(port)" }) { stack in
            try await stack.submit(["id": "before", "model": "default", "chat_input": "x"])
            #expect(try await stack.waitForResults(1)["before"]?.status == .succeeded)

            redisServer?.signal(SIGKILL)
            await redisServer?.wait()
            try await stack.submit(["id": "during", "model": "default", "chat_input": "x"])
            let during = try await stack.waitForResults(2, timeout: .seconds(60))
            #expect(during["during"]?.status == .succeeded, "results reach Kafka without Redis")

            redisServer = try await TestProcess("/usr/bin/redis-server", args, log: dir.appendingPathComponent("redis.log").path)
            try await waitUntilListening(port: port)
            try await stack.submit(["id": "after", "model": "default", "chat_input": "x"])
            let after = try await stack.waitForResults(3, timeout: .seconds(60))
            #expect(after["after"]?.status == .succeeded)
            // Events flow again once Redis is back.
            var names: [String] = []
            for _ in 0..<100 where names.last != "chat_finished" {
                names = (try? await stack.events(of: "after"))?.compactMap { $0["event"]?.stringValue } ?? []
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(names.first == "chat_started")
            #expect(names.last == "chat_finished")
        }
    }
}
