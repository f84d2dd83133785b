import Foundation
import SluiceCore
import SluiceMockProvider
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Scale-out on one machine: three `sluice worker` processes in one group share the
/// partitions; one is stopped mid-run; every job's result still arrives.
@Suite(.timeLimit(.minutes(3)))
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
            let workers = try logs.map { try TestProcess(binary, ["worker", "--config", configPath, "--log-level", "info"], log: $0) }
            defer { for w in workers { w.signal(SIGKILL) } }

            let ids = (0..<90).map { "scale-\($0)" }
            for id in ids { try await stack.submit(["id": .string(id), "model": "default", "chat_input": .string(id)]) }
            try await Task.sleep(for: .seconds(6))
            workers[0].signal(SIGTERM)
            #expect(await workers[0].wait() == 0)

            let results = try await stack.waitForResults(ids.count, timeout: .seconds(120))
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
