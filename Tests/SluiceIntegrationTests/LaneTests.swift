import Foundation
import SluiceCore
import SluiceMockProvider
import Testing

/// Priority lanes: interactive work is taken, and admitted to a rate-limited provider,
/// before a batch that saturates it.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(4)))
struct LaneTests {
    @Test func anInteractiveJobIsServedPromptlyWhileABatchSaturatesTheProvider() async throws {
        let rpm = 120
        try await TestStack.with(maxInFlight: 8, rateLimit: MockRateLimit(rpm: rpm, burst: 2), configure: { config in
            config.providers[0].rpm = rpm
        }) { stack in
            let batch = (0..<200).map { "bulk-\($0)" }
            for id in batch {
                try await stack.submitRaw(
                    try JSON.encode(["id": .string(id), "model": "default", "chat_input": "x", "priority": "batch"] as JSONValue),
                    key: id, topic: stack.config.kafka.batchRequestsTopic)
            }
            // The batch is running and held by the limit: a few results are in.
            _ = try await stack.results.waitForDistinctKeys(4, timeout: .seconds(20))

            var pickups: [Double] = []
            for i in 0..<3 {
                let id = "urgent-\(i)"
                let sent = ContinuousClock.now
                try await stack.submit(["id": .string(id), "model": "default", "chat_input": "now"])
                for _ in 0..<1500 where !stack.results.all.contains(where: { $0.keyString == id }) {
                    try await Task.sleep(for: .milliseconds(20))
                }
                let message = try #require(stack.results.all.first { $0.keyString == id })
                let result = try JSON.decode(UnifiedResponse.self, from: message.value)
                #expect(result.status == .succeeded)
                pickups.append((ContinuousClock.now - sent) / .seconds(1))
            }
            let batchDone = Set(stack.results.all.compactMap(\.keyString)).filter { $0.hasPrefix("bulk-") }.count
            // At 2 requests a second, 200 batch jobs take 100 s: behind them an
            // interactive job would wait that long. In its lane it waits for one slot of
            // the limit (half a second), plus the pipeline.
            #expect(pickups.allSatisfy { $0 < 3 }, "interactive jobs took \(pickups) s")
            #expect(batchDone < 100, "the batch was not saturating the provider (\(batchDone) done)")
            #expect(stack.mock.stats.snapshot.rateLimited <= stack.mock.stats.snapshot.requests / 10)
        }
    }
}
