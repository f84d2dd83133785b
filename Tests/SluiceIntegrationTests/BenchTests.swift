import Foundation
import SluiceCore
import Testing

/// `sluice bench --quick --scenario all`, the real binary with its own stack: it finishes
/// and its JSON summary and markdown are well-formed. Never its speed.
@Suite(.needsServices, .serialized, .timeLimit(.minutes(3)))
struct BenchTests {
    @Test func quickRunCompletesWithAWellFormedReport() async throws {
        let dir = try TestPaths.tempDir("bench")
        defer { try? FileManager.default.removeItem(at: dir) }
        let output = dir.appendingPathComponent("BENCHMARKS.md")
        let log = dir.appendingPathComponent("bench.log")
        let process = try await TestProcess(
            try TestPaths.sluiceBinary(),
            ["bench", "--quick", "--scenario", "all", "--output", output.path, "--run-dir", dir.appendingPathComponent("run").path,
             "--log-level", "warning"],
            log: log.path)
        let code = await process.wait(timeout: .seconds(150))
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(code == 0, "sluice bench exited with \(String(describing: code)); its output:\n\(text.suffix(4000))")

        let line = try #require(text.split(separator: "\n").last { $0.hasPrefix("{") && $0.contains(#""bench":"sluice""#) },
                                "no JSON summary line in:\n\(text.suffix(4000))")
        let summary = try JSON.decode(JSONValue.self, from: Array(line.utf8))
        for key in ["bench", "date", "mode", "machine", "throughput", "first_token", "concurrency", "pickup", "ceiling", "peer", "paced", "per_job", "plots", "ratios", "targets"] {
            #expect(summary[key] != nil, "summary has no \(key)")
        }
        #expect(summary["mode"]?.stringValue == "quick")
        #expect((summary["machine"]?["cpus"]?.intValue ?? 0) > 0)
        #expect((summary["throughput"]?["jobs_per_s"]?.doubleValue ?? 0) > 0)
        #expect((summary["throughput"]?["failed"]?.intValue) == 0)
        #expect((summary["ceiling"]?["publish_per_s"]?.doubleValue ?? 0) > 0)
        #expect((summary["pickup"]?["latency"]?["count"]?.intValue ?? 0) > 0)
        #expect((summary["concurrency"]?["peak_in_flight"]?.intValue ?? 0) > 0)
        // Paced: every reader found chunks with their due times, and the CPU was read.
        #expect((summary["paced"]?["delivered_chunks"]?.intValue ?? 0) > 0)
        #expect((summary["paced"]?["lateness"]?["count"]?.intValue ?? 0) == summary["paced"]?["delivered_chunks"]?.intValue)
        #expect((summary["paced"]?["cpu_s"]?["worker"]?.doubleValue ?? 0) > 0)
        #expect((summary["per_job"]?["worker_cpu_us_per_job"]?.doubleValue ?? 0) > 0)
        #expect((summary["per_job"]?["provider_connections"]?.intValue ?? 0) > 0)
        #expect((summary["per_job"]?["failed"]?.intValue) == 0)
        let firstToken = try #require(summary["first_token"]?.arrayValue)
        #expect(firstToken.compactMap { $0["streams"]?.intValue } == [1, 50], "quick mode keeps two first-token levels")
        for f in firstToken { #expect((f["latency"]?["count"]?.intValue ?? 0) > 0) }
        #expect(summary["peer"]?["skipped"]?.stringValue != nil, "quick mode skips the peer with a note")
        #expect(summary["plots"]?["skipped"]?.stringValue != nil, "quick mode draws no plots and says so")
        let targets = try #require(summary["targets"]?.arrayValue)
        #expect(targets.count == 14)
        for t in targets { #expect(["met", "missed", "not measured"].contains(t["status"]?.stringValue ?? "")) }

        let markdown = try String(contentsOf: output, encoding: .utf8)
        #expect(markdown.hasPrefix("# Sluice benchmarks"))
        for heading in ["## Machine", "## Targets", "## Figures", "## Plots", "## Reproduce"] {
            #expect(markdown.contains(heading), "no \(heading)")
        }
        let rows = markdown.split(separator: "\n").filter { $0.hasPrefix("| ") }
        for prefix in ["| throughput |", "| first-token |", "| concurrency |", "| pickup |", "| ceiling |", "| peer |", "| paced |", "| per-job |", "| CPU model |"] {
            #expect(rows.contains { $0.hasPrefix(prefix) }, "no table row starting with \(prefix)")
        }
        #expect(markdown.contains("plots skipped: "))
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("docs").path), "quick mode writes no PNGs")
        #expect(rows.filter { $0.hasSuffix("| met |") || $0.hasSuffix("| missed |") || $0.hasSuffix("| not measured |") }.count == 14)
    }
}
