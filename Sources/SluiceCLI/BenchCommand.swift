import ArgumentParser
import Foundation
import SluiceBench
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif


struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the pipeline against Redis's PUBLISH ceiling and the LiteLLM proxy; write BENCHMARKS.md.",
        discussion: """
            Starts its own stack on free loopback ports (redis-server, Tansu, one worker, the gateway) and its \
            own timestamping provider in this process, runs the scenarios, writes the report and prints a JSON \
            summary line on stdout. Everything it started is stopped when it ends, fails or is interrupted. \
            --quick uses small counts (well under a minute) and skips the peer.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "throughput, first-token, concurrency, pickup, ceiling, peer, paced, per-job or all.")
    var scenario: String = "all"

    @Flag(help: "Small counts for tests; writes to a temporary file unless --output is given.")
    var quick = false

    @Option(help: "Where the markdown report goes (default BENCHMARKS.md; a temporary file with --quick).")
    var output: String?

    @Option(name: .customLong("kafka-property"), help: "KEY=VALUE: a librdkafka property for the stack's worker and gateway (repeatable), to try a setting.")
    var kafkaProperties: [String] = []

    @Option(help: "Where the stack's config and logs go.")
    var runDir: String = ".run/bench"

    @Option(help: "Content chunks per job in the throughput scenario (default 20; more shows the per-chunk cost apart from the per-job one).")
    var chunksPerJob: Int?

    func run() async throws {
        guard let scenario = Bench.Scenario(rawValue: scenario) else {
            throw ValidationError("unknown scenario \"\(self.scenario)\"; use one of \(Bench.Scenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let logger = global.makeLogger("sluice.bench")
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let tansu = try Tools.find("tansu", env: "SLUICE_TANSU")
        let tools = BenchTools(
            sluice: me, tansu: tansu, redisServer: try Tools.find("redis-server", env: "SLUICE_REDIS_SERVER"),
            redisBenchmark: try? Tools.find("redis-benchmark", env: "SLUICE_REDIS_BENCHMARK"),
            python: try? Tools.find("python3", env: "SLUICE_PYTHON"))
        // .deps beside the broker when it came from `make setup`, else in the working directory.
        let tansuDir = URL(fileURLWithPath: tansu).deletingLastPathComponent()
        let depsDir = tansuDir.lastPathComponent == "bin" && tansuDir.deletingLastPathComponent().lastPathComponent == ".deps"
            ? tansuDir.deletingLastPathComponent() : URL(fileURLWithPath: ".deps", isDirectory: true)
        let outputPath = output ?? (quick
            ? FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-\(UUID().uuidString.prefix(8)).md").path
            : "BENCHMARKS.md")
        let runDir = URL(fileURLWithPath: self.runDir, isDirectory: true)
        try FileManager.default.createDirectory(at: runDir, withIntermediateDirectories: true)
        raiseOpenFileLimit()

        let signals = await SignalWatcher()
        var options = Bench.Options(
            scenario: scenario, quick: quick, output: outputPath, runDir: runDir, depsDir: depsDir,
            commandLine: (["sluice"] + CommandLine.arguments.dropFirst()).joined(separator: " "))
        if let chunksPerJob {
            guard chunksPerJob > 0 else { throw ValidationError("--chunks-per-job must be at least 1") }
            options.throughputChunks = chunksPerJob
        }
        for property in kafkaProperties {
            guard let eq = property.firstIndex(of: "="), eq != property.startIndex else {
                throw ValidationError("--kafka-property takes KEY=VALUE, got \"\(property)\"")
            }
            options.kafkaProperties[String(property[..<eq])] = String(property[property.index(after: eq)...])
        }

        let runOptions = options
        let report = try await ChildProcessGroup.with(logDir: runDir.appendingPathComponent("logs", isDirectory: true)) { children in
            try await withThrowingTaskGroup(of: BenchReport?.self) { group in
                group.addTask { try await Bench.run(options: runOptions, tools: tools, children: children, logger: logger) }
                group.addTask {
                    guard let s = await signals.next(), !Task.isCancelled else { return nil }
                    FileHandle.standardError.write(Data("\nstopping (\(s)); stopping the stack\n".utf8))
                    await children.stopAll()
                    throw ExitCode(130)
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let report = first else { throw ExitCode(130) }
                return report
            }
        }
        say(try report.jsonLine())
    }

    /// 10,000 streams need more than the usual 1,024 descriptors; children inherit the limit.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
