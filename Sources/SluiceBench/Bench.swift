import Foundation
import Logging
import SluiceCore
import SluiceMockProvider
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

/// `sluice bench`: starts its own stack and provider, runs the chosen scenarios, writes
/// BENCHMARKS.md and returns the figures.
public enum Bench {
    public enum Scenario: String, CaseIterable, Sendable {
        case throughput, firstToken = "first-token", concurrency, pickup, ceiling, peer, paced, perJob = "per-job", https, all
    }

    public struct Options: Sendable {
        public var scenario: Scenario
        public var quick: Bool
        public var output: String
        public var runDir: URL
        public var depsDir: URL
        public var commandLine: String
        /// Extra librdkafka properties for the stack's worker and gateway (`kafka.properties`).
        public var kafkaProperties: [String: String] = [:]
        /// Content chunks per throughput job, instead of the run's default; the job count
        /// shrinks to keep the chunk count.
        public var throughputChunks: Int?

        public init(scenario: Scenario, quick: Bool, output: String, runDir: URL, depsDir: URL, commandLine: String) {
            self.scenario = scenario
            self.quick = quick
            self.output = output
            self.runDir = runDir
            self.depsDir = depsDir
            self.commandLine = commandLine
        }

        func runs(_ s: Scenario) -> Bool { scenario == .all || scenario == s }
    }

    /// The counts of a run.
    struct Sizes: Sendable, Encodable {
        var throughputJobs, throughputChunks, sseEvery: Int
        /// Streams open at once at each point of the first-token curve; 1 runs them one
        /// after another, the highest is the one the targets judge.
        var firstTokenLevels: [Int]
        /// The fewest streams a first-token level measures, so a low level's p99 is more
        /// than its slowest stream.
        var firstTokenSamples: Int
        var concurrencyJobs, concurrencyChunks, concurrencyPace: Int
        var pickupJobs: Int
        var publishRequests, pipelinedRequests: Int
        /// Streams open at once in `paced`, their content chunks and the gap between them;
        /// a reader gives up its schedule + `pacedGraceSeconds` + 30 s after its request.
        var pacedStreams, pacedChunks, pacedPaceMs, pacedGraceSeconds: Int
        var perJobJobs: Int
        /// One-chunk jobs over HTTPS and HTTP/2, produced at once; the same number runs
        /// first as the warm-up.
        var httpsJobs: Int

        /// How many streams the first-token level of `concurrency` streams at once measures.
        func firstTokenStreams(at concurrency: Int) -> Int { max(concurrency, firstTokenSamples) }

        static let full = Sizes(
            throughputJobs: 2_000, throughputChunks: 20, sseEvery: 10, firstTokenLevels: [1, 10, 100, 300, 1_000], firstTokenSamples: 200,
            concurrencyJobs: 10_000, concurrencyChunks: 30, concurrencyPace: 1_000, pickupJobs: 200,
            publishRequests: 300_000, pipelinedRequests: 2_000_000,
            pacedStreams: 1_000, pacedChunks: 1_500, pacedPaceMs: 20, pacedGraceSeconds: 60, perJobJobs: 2_000, httpsJobs: 2_000)
        static func of(_ options: Options) -> Sizes {
            var sizes = options.quick ? Sizes.quick : Sizes.full
            if let chunks = options.throughputChunks, chunks != sizes.throughputChunks {
                sizes.throughputJobs = max(10, sizes.throughputJobs * sizes.throughputChunks / chunks)
                sizes.throughputChunks = chunks
            }
            return sizes
        }

        static let quick = Sizes(
            throughputJobs: 200, throughputChunks: 20, sseEvery: 10, firstTokenLevels: [1, 50], firstTokenSamples: 20,
            concurrencyJobs: 300, concurrencyChunks: 20, concurrencyPace: 50, pickupJobs: 20,
            publishRequests: 20_000, pipelinedRequests: 100_000,
            pacedStreams: 50, pacedChunks: 100, pacedPaceMs: 20, pacedGraceSeconds: 20, perJobJobs: 200, httpsJobs: 200)
    }

    public static func run(options: Options, tools: BenchTools, children: ChildProcessGroup, logger: Logger) async throws -> BenchReport {
        let sizes = Sizes.of(options)
        let machine = MachineInfo.current()
        let initialReport = BenchReport(
            date: ISO8601DateFormatter().string(from: Date()), mode: options.quick ? "quick" : "full",
            scenario: options.scenario.rawValue, machine: machine, commandLine: options.commandLine, sizes: sizes)
        @Sendable func step(_ text: String) { FileHandle.standardError.write(Data("• \(text)\n".utf8)) }

        try FileManager.default.createDirectory(at: children.logDir, withIntermediateDirectories: true)
        let maxInFlight = max(12_000, sizes.concurrencyJobs + 1_000)
        // The https scenario's provider: the same provider over HTTPS with HTTP/2, with a
        // certificate made now, written where the worker's config names it as the CA.
        let certificate = options.runs(.https) ? try MockCertificate.selfSigned() : nil
        let caFile = options.runDir.appendingPathComponent("bench-ca.pem").path
        try certificate?.writeCertificate(to: caFile)
        return try await TimestampingProvider.withRunning(logger: logger, tls: certificate) { provider in
            var report = initialReport
            // Relative to where the bench ran, so a committed report names no machine's paths.
            let here = FileManager.default.currentDirectoryPath + "/"
            let logs = children.logDir.standardizedFileURL.path
            report.logDir = logs.hasPrefix(here) ? String(logs.dropFirst(here.count)) : logs
            step("starting Redis, the broker, a worker (max_in_flight \(maxInFlight)) and the gateway; logs in \(children.logDir.path)")
            let stack = try await BenchStack.start(
                children: children, tools: tools, providerURL: provider.baseURL,
                secureProvider: provider.secureBaseURL.map { ($0, caFile) }, maxInFlight: maxInFlight,
                kafkaProperties: options.kafkaProperties,
                runDir: options.runDir, logger: logger)
            let client = try PipelineClient(config: stack.config, children: children, logger: logger)
            let consumer = Task { await client.consumeResults() }
            defer {
                consumer.cancel()
                client.shutdown()
            }
            let scenarios = Scenarios(stack: stack, client: client, provider: provider, logger: logger,
                                      runID: String(UUID().uuidString.prefix(8)).lowercased())
            step("warming up (the worker's first group join takes a few seconds)")
            try await scenarios.warmUp()
            report.workerIdleRSSBytes = ProcStats.rssBytes(pid: stack.worker.pid)

            if options.runs(.ceiling) {
                step("ceiling: redis-benchmark PUBLISH, unpipelined and -P 16")
                report.ceiling = try await ceiling(tools: tools, children: children, port: stack.redisPort, sizes: sizes)
            }
            if options.runs(.pickup) {
                step("pickup: \(sizes.pickupJobs) jobs one at a time")
                report.pickup = try await scenarios.pickup(jobs: sizes.pickupJobs)
            }
            if options.runs(.concurrency) {
                step("concurrency: \(sizes.concurrencyJobs) streams of \(sizes.concurrencyChunks) chunks every \(sizes.concurrencyPace) ms")
                report.concurrency = try await scenarios.concurrency(
                    jobs: sizes.concurrencyJobs, chunks: sizes.concurrencyChunks, paceMs: sizes.concurrencyPace)
            }
            if options.runs(.firstToken) {
                let path: Scenarios.StreamPath = await scenarios.gatewayHasChatCompletions() ? .chatCompletions : .jobsAndEvents
                for c in sizes.firstTokenLevels {
                    step("first-token: \(sizes.firstTokenStreams(at: c)) streams, \(c) at once, through \(path.rawValue)")
                    report.firstToken.append(try await scenarios.firstToken(
                        label: "ft\(c)", path: path, baseURL: stack.gatewayURL, concurrency: c, total: sizes.firstTokenStreams(at: c)))
                }
            }
            if options.runs(.throughput) {
                step("throughput: \(sizes.throughputJobs) jobs × \(sizes.throughputChunks) chunks, SSE readers on every \(sizes.sseEvery)th")
                report.throughput = try await scenarios.throughput(
                    jobs: sizes.throughputJobs, chunks: sizes.throughputChunks, sseEvery: sizes.sseEvery)
            }
            if options.runs(.perJob) {
                step("per-job: \(sizes.perJobJobs) one-chunk jobs")
                report.perJob = try await scenarios.perJob(jobs: sizes.perJobJobs)
            }
            if options.runs(.https) {
                step("https: \(sizes.httpsJobs) one-chunk jobs against the provider over HTTPS and HTTP/2, after as many as warm-up")
                report.https = try await scenarios.https(jobs: sizes.httpsJobs)
            }
            if options.runs(.paced) {
                let s = sizes
                step("paced: \(s.pacedStreams) streams × \(s.pacedChunks) chunks every \(s.pacedPaceMs) ms, a reader on each, through the gateway")
                report.paced = await scenarios.paced(
                    label: "pc", path: .chatCompletions, baseURL: stack.gatewayURL, streams: s.pacedStreams, chunks: s.pacedChunks,
                    paceMs: s.pacedPaceMs, grace: .seconds(s.pacedGraceSeconds),
                    processes: ["worker": stack.worker.pid, "gateway": stack.gateway.pid, "redis": stack.redis.pid, "bench": getpid()])
            }
            if options.runs(.peer) || options.runs(.paced) {
                report.peer = try await Peer.run(
                    options: options, sizes: sizes, tools: tools, children: children, scenarios: scenarios,
                    provider: provider, step: step)
            }
            report.plots = try await Plots.draw(report: report, options: options, tools: tools, children: children, step: step)
            // Notes written by hand below the marker (a profile, say) survive a rerun.
            var text = report.markdown()
            if let old = try? String(contentsOfFile: options.output, encoding: .utf8),
               let marker = old.range(of: BenchReport.handWrittenMarker) {
                text += "\n" + old[marker.lowerBound...]
            }
            // Minutes of measuring must not be lost to a folder that is not there yet.
            try FileManager.default.createDirectory(
                at: URL(fileURLWithPath: options.output).deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(toFile: options.output, atomically: true, encoding: .utf8)
            step("wrote \(options.output)")
            return report
        }
    }

    static func ceiling(tools: BenchTools, children: ChildProcessGroup, port: Int, sizes: Sizes) async throws -> CeilingResult {
        guard let benchmark = tools.redisBenchmark else { throw BenchError("redis-benchmark not found; install redis-tools") }
        // A content chunk's event as the worker publishes it is 335 bytes with this
        // provider's chunks (the throughput scenario measures it and shows it beside).
        let payload = String(repeating: "x", count: 335)
        func rate(_ name: String, _ extra: [String], requests: Int) async throws -> Double {
            let finished = try await children.run(name, benchmark, [
                "-h", "127.0.0.1", "-p", "\(port)", "-n", "\(requests)", "-c", "50", "--csv",
            ] + extra + ["PUBLISH", "sluice:bench:ceiling", payload], timeout: .seconds(120))
            guard finished else { throw BenchError("redis-benchmark did not finish in 120 s") }
            let text = (try? String(contentsOfFile: children.logPath(name), encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n").reversed() where line.hasPrefix("\"PUBLISH") {
                let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
                if fields.count > 1, let r = Double(fields[1]) { return r }
            }
            throw BenchError("cannot read redis-benchmark's output in \(children.logPath(name))")
        }
        let plain = try await rate("redis-benchmark", [], requests: sizes.publishRequests)
        let pipelined = try await rate("redis-benchmark-p16", ["-P", "16"], requests: sizes.pipelinedRequests)
        return CeilingResult(payloadBytes: payload.utf8.count, clients: 50, publishPerSecond: plain, publishPipelined16PerSecond: pipelined)
    }
}
