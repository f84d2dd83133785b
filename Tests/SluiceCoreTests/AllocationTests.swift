import Foundation
import SluiceCore
import SluiceSupport
import Testing

/// The heap allocations per chunk of the worker's chunk path (provider SSE bytes in →
/// the event's Redis command out) and the gateway's relay (event envelope in → SSE frame
/// out). Counts are deterministic for a given build, so they are held to the figures
/// measured when these limits were set: a change that allocates more per chunk fails
/// here and must either be fixed or raise the limit on purpose.
///
/// `SluiceAllocations` does the counting in a process of its own, with ordo-one's malloc
/// interposer preloaded, so nothing else this test run does is counted.
@Suite("Allocations per chunk")
struct AllocationTests {
    /// Debug-build figures (what `make test` builds), measured over 1,000 chunks: the
    /// worker 14.005 (14 per chunk, and 5 regrowths of the accumulated reply over the
    /// 1,000), the events relay 6, the chat completions relay 6 (`RunGuard` compares the
    /// followed run's prefix in place; `JSONScanner` scans over a buffer pointer). The
    /// counts do not vary between runs; the worker's limit leaves 5 more regrowths per
    /// 1,000 chunks, the relays none. The release build's figures are in BENCHMARKS.md.
    static let workerLimit = 14.01
    static let gatewayEventsLimit = 6.0
    static let gatewayCompletionsLimit = 6.0

    @Test("the worker's chunk path and the gateway's relay allocate no more per chunk than measured")
    func perChunk() async throws {
        let counts = try await Self.measure(chunks: 1_000)
        #expect(counts.chunks == 1_000)
        #expect(counts.worker <= Self.workerLimit, "worker chunk path: \(counts.worker) mallocs per chunk, limit \(Self.workerLimit)")
        #expect(counts.gatewayEvents <= Self.gatewayEventsLimit,
                "gateway relay (events): \(counts.gatewayEvents) mallocs per chunk, limit \(Self.gatewayEventsLimit)")
        #expect(counts.gatewayCompletions <= Self.gatewayCompletionsLimit,
                "gateway relay (chat completions): \(counts.gatewayCompletions) mallocs per chunk, limit \(Self.gatewayCompletionsLimit)")
        // The counter counts: a path that allocates nothing at all is more likely a
        // counter that is not loaded than a path with no allocation.
        #expect(counts.worker > 0, "the interposer counted no allocation; is it preloaded?")
    }

    struct Counts {
        var chunks: Int
        var worker: Double
        var gatewayEvents: Double
        var gatewayCompletions: Double
    }

    static func measure(chunks: Int) async throws -> Counts {
        let dir = try buildDirectory()
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = dir.appendingPathComponent("libMallocInterposerSwift.so").path
        let run = try await Command.run([dir.appendingPathComponent("SluiceAllocations").path, String(chunks)], environment: environment)
        try #require(run.status == 0, "SluiceAllocations exited with \(run.status): \(run.text.suffix(2_000))")
        // stdout's one JSON line; anything on stderr is not.
        let line = try #require(run.text.split(separator: "\n").last { $0.hasPrefix("{") }.map(String.init))
        let json = try JSON.decode(JSONValue.self, from: Array(line.utf8))
        func number(_ key: String) throws -> Double {
            try #require(json[key]?.doubleValue, "SluiceAllocations printed no \(key): \(line)")
        }
        return Counts(
            chunks: Int(try number("chunks")), worker: try number("worker_mallocs_per_chunk"),
            gatewayEvents: try number("gateway_events_mallocs_per_chunk"),
            gatewayCompletions: try number("gateway_completions_mallocs_per_chunk"))
    }

    /// Where `swift build --build-tests` put the counter and the interposer.
    static func buildDirectory() throws -> URL {
        let bundle = Bundle.main.bundleURL
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for dir in [bundle, bundle.deletingLastPathComponent(), root.appendingPathComponent(".build/debug")]
        where FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("SluiceAllocations").path) {
            return dir
        }
        throw AllocationCounterMissing()
    }

    struct AllocationCounterMissing: Error, CustomStringConvertible {
        var description: String { "no SluiceAllocations next to the tests; build with `swift build --build-tests`" }
    }
}
