import Foundation
import SluiceCore

/// One of the bench's performance targets (the "Targets" table of its report), judged.
public struct TargetCheck: Sendable, Codable {
    var name: String
    var target: String
    var measured: String
    /// `met`, `missed` or `not measured`.
    var status: String
}

/// Everything one run measured: the JSON summary and BENCHMARKS.md.
public struct BenchReport: Sendable, Encodable {
    var date: String
    var mode: String
    var scenario: String
    var machine: MachineInfo
    var commandLine: String
    var sizes: Bench.Sizes
    var workerIdleRSSBytes: Int?
    var logDir = ""
    var throughput: ThroughputResult?
    var firstToken: [FirstTokenResult] = []
    var concurrency: ConcurrencyResult?
    var pickup: PickupResult?
    var ceiling: CeilingResult?
    var peer: PeerResult?
    var paced: PacedResult?
    var perJob: PerJobResult?
    var https: HTTPSResult?
    var plots: PlotsResult?

    init(date: String, mode: String, scenario: String, machine: MachineInfo, commandLine: String, sizes: Bench.Sizes) {
        self.date = date
        self.mode = mode
        self.scenario = scenario
        self.machine = machine
        self.commandLine = commandLine
        self.sizes = sizes
    }

    var firstTokenLow: FirstTokenResult? { firstToken.first { $0.streams == 1 } }
    var firstTokenHigh: FirstTokenResult? { Self.highest(firstToken) }
    var peerLow: FirstTokenResult? { peer?.firstToken.first { $0.streams == 1 } }
    var peerHigh: FirstTokenResult? { peer.flatMap { Self.highest($0.firstToken) } }

    /// The most concurrent level of a first-token curve: the one the targets judge.
    static func highest(_ curve: [FirstTokenResult]) -> FirstTokenResult? {
        curve.filter { $0.streams > 1 }.max { $0.streams < $1.streams }
    }

    /// `a / b` to three decimals, when both are measured.
    static func ratio(_ a: Double?, _ b: Double?) -> Double? {
        guard let a, let b, a.isFinite, b.isFinite, b > 0 else { return nil }
        return (a / b * 1000).rounded() / 1000
    }

    /// Ratios of the pipeline to the ceiling and to the peer.
    var ratios: [String: Double?] {
        let r = Self.ratio
        return [
            "chunks_per_s_vs_publish": r(throughput?.chunksPerSecond, ceiling?.publishPerSecond),
            "chunks_per_s_vs_publish_p16": r(throughput?.chunksPerSecond, ceiling?.publishPipelined16PerSecond),
            "peer_vs_sluice_first_token_p50_1": r(peerLow?.latency.p50Ms, firstTokenLow?.latency.p50Ms),
            "peer_vs_sluice_first_token_p99_1": r(peerLow?.latency.p99Ms, firstTokenLow?.latency.p99Ms),
            "peer_vs_sluice_first_token_p50_high": r(peerHigh?.latency.p50Ms, firstTokenHigh?.latency.p50Ms),
            "peer_vs_sluice_first_token_p99_high": r(peerHigh?.latency.p99Ms, firstTokenHigh?.latency.p99Ms),
        ]
    }

    static let bytesPerMiB = 1024.0 * 1024
    /// The worker's memory target at 10,000 streams in flight, judged here and drawn on
    /// the plot.
    static let workerRSSTargetMiB = 400.0
    /// The first-token targets at 1,000 streams, judged here and drawn on the plot.
    static let firstTokenP50TargetMs = 1.0
    static let firstTokenP99TargetMs = 5.0

    /// Everything from this line on in an existing report is kept when the bench rewrites it.
    public static let handWrittenMarker = "<!-- sluice bench: hand-written notes below are kept -->"

    /// Worker memory for 10,000 streams: the peak when 10,000 ran, else projected from
    /// the per-job figure.
    var rssFor10kStreams: (bytes: Double, projected: Bool)? {
        guard let c = concurrency else { return nil }
        if c.peakInFlight >= 10_000 { return (Double(c.peakRSSBytes), false) }
        return (Double(c.idleRSSBytes) + c.rssBytesPerInFlightJob * 10_000, true)
    }

    var targets: [TargetCheck] {
        func status(_ ok: Bool?) -> String { ok.map { $0 ? "met" : "missed" } ?? "not measured" }
        let high = firstTokenHigh
        let at = high.map { " at \($0.streams) streams" } ?? ""
        var list: [TargetCheck] = []
        let cpu = throughput?.workerCPUMicrosPerChunk
        list.append(.init(name: "worker CPU per relayed chunk", target: "≤ 10 µs", measured: cpu.map { fmt($0, 2) + " µs" } ?? "–",
                          status: status(cpu.map { $0 <= 10 })))
        list.append(.init(name: "first-token overhead p50" + at, target: "< 1 ms (at 1,000 streams)",
                          measured: high.map { fmt($0.latency.p50Ms, 3) + " ms" } ?? "–", status: status(high.map { $0.latency.p50Ms < Self.firstTokenP50TargetMs })))
        list.append(.init(name: "first-token overhead p99" + at, target: "< 5 ms (at 1,000 streams)",
                          measured: high.map { fmt($0.latency.p99Ms, 3) + " ms" } ?? "–", status: status(high.map { $0.latency.p99Ms < Self.firstTokenP99TargetMs })))
        let peerRatio = ratios["peer_vs_sluice_first_token_p50_high"] ?? nil
        list.append(.init(name: "first-token overhead vs LiteLLM (p50" + at + ")", target: "≥ 5× lower",
                          measured: peerRatio.map { fmt($0, 1) + "× lower" } ?? (peer?.skipped.map { "skipped: \($0)" } ?? "–"),
                          status: status(peerRatio.map { $0 >= 5 })))
        let rss = rssFor10kStreams
        list.append(.init(name: "worker RSS at 10,000 streams" + (rss?.projected == true ? " (projected from \(concurrency!.peakInFlight))" : ""),
                          target: "< \(fmt(Self.workerRSSTargetMiB, 0)) MiB", measured: rss.map { fmt($0.bytes / Self.bytesPerMiB, 1) + " MiB" } ?? "–",
                          status: status(rss.map { $0.bytes < Self.workerRSSTargetMiB * Self.bytesPerMiB })))
        list.append(.init(name: "pickup p50", target: "< 10 ms", measured: pickup.map { fmt($0.latency.p50Ms, 2) + " ms" } ?? "–",
                          status: status(pickup.map { $0.latency.p50Ms < 10 })))
        let ratio = ratios["chunks_per_s_vs_publish"] ?? nil
        list.append(.init(name: "pipeline chunks/s vs unpipelined PUBLISH/s", target: "≥ 0.25",
                          measured: ratio.map { fmt($0, 3) } ?? "–", status: status(ratio.map { $0 >= 0.25 })))
        let pacedAt = paced.map { " (paced, \($0.streams) streams)" } ?? " (paced)"
        let pacedWorker = paced?.cpuMicrosPerChunk("worker")
        list.append(.init(name: "worker CPU per relayed chunk" + pacedAt, target: "≤ 5 µs",
                          measured: pacedWorker.map { fmt($0, 2) + " µs" } ?? "–", status: status(pacedWorker.map { $0 <= 5 })))
        let pacedGateway = paced?.cpuMicrosPerFrame("gateway")
        list.append(.init(name: "gateway CPU per SSE chunk" + pacedAt, target: "≤ 5 µs",
                          measured: pacedGateway.map { fmt($0, 2) + " µs" } ?? "–", status: status(pacedGateway.map { $0 <= 5 })))
        let pacedP99 = paced.flatMap { $0.lateness.count > 0 ? $0.lateness.p99Ms : nil }
        list.append(.init(name: "chunk lateness p99" + pacedAt, target: "≤ 5 ms (at 1,000 streams)",
                          measured: pacedP99.map { fmt($0, 3) + " ms" } ?? "–", status: status(pacedP99.map { $0 <= 5 })))
        let cpuRatio = pacedCPURatio
        list.append(.init(name: "CPU per chunk vs LiteLLM (paced; worker + gateway against the proxy)", target: "≥ 5× less",
                          measured: cpuRatio.map { fmt($0, 1) + "× less" } ?? (peer?.skipped.map { "skipped: \($0)" } ?? "–"),
                          status: status(cpuRatio.map { $0 >= 5 })))
        let handshakes = https?.handshakesPer100Jobs
        list.append(.init(name: "TLS handshakes per 100 jobs after warm-up (https)", target: "≤ 1",
                          measured: handshakes.map { fmt($0, 2) } ?? "–", status: status(handshakes.map { $0 <= 1 })))
        let httpsCPU = https?.workerCPUMicrosPerJob
        list.append(.init(name: "worker CPU per job (https)", target: "≤ 60 µs",
                          measured: httpsCPU.map { fmt($0, 1) + " µs" } ?? "–", status: status(httpsCPU.map { $0 <= 60 })))
        let perJobCPU = perJob?.workerCPUMicrosPerJob
        list.append(.init(name: "worker CPU per job (per-job, one-chunk jobs)", target: "≤ 60 µs",
                          measured: perJobCPU.map { fmt($0, 1) + " µs" } ?? "–", status: status(perJobCPU.map { $0 <= 60 })))
        return list
    }

    /// LiteLLM's CPU per chunk delivered over Sluice's (worker plus gateway) at the paced load.
    var pacedCPURatio: Double? {
        guard let ours = paced, let theirs = peer?.paced,
              let w = ours.cpuMicrosPerChunk("worker"), let g = ours.cpuMicrosPerChunk("gateway") else { return nil }
        return Self.ratio(theirs.cpuMicrosPerChunk("litellm"), w + g)
    }

    enum CodingKeys: String, CodingKey {
        case bench, date, mode, scenario, machine, throughput, concurrency, pickup, ceiling, peer, paced, https, plots, ratios, targets
        case perJob = "per_job"
        case firstToken = "first_token"
        case workerIdleRSSBytes = "worker_idle_rss_bytes"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("sluice", forKey: .bench)
        try c.encode(date, forKey: .date)
        try c.encode(mode, forKey: .mode)
        try c.encode(scenario, forKey: .scenario)
        try c.encode(machine, forKey: .machine)
        try c.encode(workerIdleRSSBytes, forKey: .workerIdleRSSBytes)
        try c.encode(throughput, forKey: .throughput)
        try c.encode(firstToken, forKey: .firstToken)
        try c.encode(concurrency, forKey: .concurrency)
        try c.encode(pickup, forKey: .pickup)
        try c.encode(ceiling, forKey: .ceiling)
        try c.encode(peer, forKey: .peer)
        try c.encode(paced, forKey: .paced)
        try c.encode(perJob, forKey: .perJob)
        try c.encode(https, forKey: .https)
        try c.encode(plots, forKey: .plots)
        try c.encode(ratios, forKey: .ratios)
        try c.encode(targets, forKey: .targets)
    }

    /// The one-line JSON summary.
    public func jsonLine() throws -> String {
        String(decoding: try JSON.sortedEncoder.encode(self), as: UTF8.self)
    }

    // MARK: markdown

    func markdown() -> String {
        var md = """
            # Sluice benchmarks

            Written by `sluice bench` (\(mode) run, scenario `\(scenario)`) on \(date).

            ## Machine

            | | |
            |---|---|
            | CPUs (nproc) | \(machine.cpus) |
            | memory | \(fmt(machine.memoryGiB, 1)) GiB |
            | CPU model | \(machine.cpuModel) |
            | kernel | \(machine.kernel) |

            Everything runs on this one machine at once: Tansu (in-memory storage), redis-server, one \
            `sluice worker`, one `sluice gateway`, and the bench process itself, which holds the timestamping \
            provider, the Kafka producer and results consumer, and the SSE readers. Every timestamp is read \
            from the bench process's monotonic clock.

            ## Targets

            | target | goal | measured | |
            |---|---|---|---|

            """
        for t in targets { md += "| \(t.name) | \(t.target) | \(t.measured) | \(t.status) |\n" }

        md += "\n## Figures\n\n| scenario | measure | value | beside it |\n|---|---|---|---|\n"
        let r = ratios
        func ratio(_ key: String) -> String { (r[key] ?? nil).map { fmt($0, 3) } ?? "–" }
        if let t = throughput {
            md += "| throughput | jobs/s (\(t.jobs) jobs × \(t.contentChunksPerJob) content chunks) | \(fmt(t.jobsPerSecond, 1)) | |\n"
            md += "| throughput | relayed chunks/s (content + role + finish + usage) | \(fmt(t.chunksPerSecond, 0)) | \(ratio("chunks_per_s_vs_publish"))× unpipelined PUBLISH/s, \(ratio("chunks_per_s_vs_publish_p16"))× pipelined |\n"
            md += "| throughput | worker CPU per 1,000 relayed chunks | \(fmt(t.workerCPUSecondsPer1000Chunks * 1000, 1)) ms (\(fmt(t.workerCPUMicrosPerChunk, 2)) µs/chunk) | target ≤ 10 µs/chunk |\n"
            md += "| throughput | gateway CPU per 1,000 SSE chunks (\(t.sseStreams) SSE readers, \(t.sseChunks) chunks) | \(t.gatewayCPUSecondsPer1000SSEChunks.map { fmt($0 * 1000, 1) + " ms" } ?? "–") | |\n"
            md += "| throughput | failed jobs | \(t.failed) | |\n"
        }
        for f in firstToken {
            md += "| first-token | overhead at \(f.streams) stream\(f.streams == 1 ? "" : "s") (\(f.latency.count) samples) p50 / p90 / p99 / max | \(lat(f.latency)) | \(peerCell(f)) |\n"
        }
        if let c = concurrency {
            md += "| concurrency | peak streams in flight (\(c.jobs) jobs × \(c.chunksPerJob) chunks every \(c.paceMs) ms) | \(c.peakInFlight) | |\n"
            md += "| concurrency | worker RSS idle → peak | \(mib(c.idleRSSBytes)) → \(mib(c.peakRSSBytes)) | |\n"
            md += "| concurrency | worker RSS per in-flight job | \(fmt(c.rssBytesPerInFlightJob / 1024, 1)) KiB | |\n"
            md += "| concurrency | lateness (result latency_s − scripted \(fmt(Double((c.chunksPerJob - 1) * c.paceMs) / 1000, 2)) s) p50 / p90 / p99 / max | \(lat(c.lateness)) | |\n"
            md += "| concurrency | last chunk's lateness after the first (latency_s − time_to_first_token_s − \(fmt(Double((c.chunksPerJob - 1) * c.paceMs) / 1000, 2)) s) p50 / p90 / p99 / max | \(lat(c.streamLateness)) | |\n"
            md += "| concurrency | failed jobs | \(c.failed) | |\n"
        }
        if let p = pickup {
            md += "| pickup | job produced → provider request, p50 / p90 / p99 / max (\(p.jobs) jobs, one at a time) | \(lat(p.latency)) | |\n"
        }
        if let c = ceiling {
            md += "| ceiling | redis-benchmark PUBLISH/s, \(c.payloadBytes) B, \(c.clients) clients | \(fmt(c.publishPerSecond, 0)) | |\n"
            md += "| ceiling | redis-benchmark PUBLISH/s, -P 16 | \(fmt(c.publishPipelined16PerSecond, 0)) | |\n"
        }
        if let p = peer {
            if let s = p.skipped {
                md += "| peer | \(p.name) | skipped | \(s) |\n"
            }
            for f in p.firstToken {
                md += "| peer | \(p.name) \(p.version ?? "") first-token overhead at \(f.streams) stream\(f.streams == 1 ? "" : "s") p50 / p90 / p99 / max | \(lat(f.latency)) | errors: \(f.errors) |\n"
            }
        }
        for (name, p) in [("paced", paced), ("peer paced", peer?.paced)] {
            guard let p else { continue }
            let through = name == "paced" ? "Sluice (gateway chat completions)" : "\(peer?.name ?? "peer")"
            md += "| \(name) | \(through): \(p.streams) streams × \(p.chunksPerStream) chunks every \(p.paceMs) ms, content chunks delivered | \(p.deliveredChunks) of \(p.expectedChunks) in \(fmt(p.seconds, 1)) s | \(p.failedStreams) streams failed or cut |\n"
            md += "| \(name) | chunk lateness at the reader (each against its own due time) p50 / p90 / p99 / max | \(lat(p.lateness)) | provider's own write lateness: \(lat(p.providerWriteLateness)) |\n"
            for process in p.cpuSeconds.keys.sorted() {
                let perChunk = p.cpuMicrosPerChunk(process).map { fmt($0, 2) + " µs" } ?? "–"
                let perFrame = p.cpuMicrosPerFrame(process).map { fmt($0, 2) + " µs" } ?? "–"
                md += "| \(name) | \(process) CPU per content chunk delivered (per SSE frame) | \(perChunk) (\(perFrame)) | \(fmt(p.cpuSeconds[process] ?? 0, 1)) CPU s |\n"
            }
            if let busy = p.machineBusy {
                md += "| \(name) | the machine's CPUs kept busy by the processes above | \(fmt(busy * 100, 0)) % | \(fmt(p.cpuSeconds.values.reduce(0, +), 1)) CPU s in \(fmt(p.seconds, 1)) s on \(ProcessInfo.processInfo.activeProcessorCount) CPUs |\n"
            }
        }
        if let j = perJob {
            md += "| per-job | worker CPU per one-chunk job (\(j.jobs) jobs, Kafka and Redis work included) | \(fmt(j.workerCPUMicrosPerJob, 1)) µs | \(fmt(Double(j.jobs) / j.seconds, 0)) jobs/s, \(j.providerConnections) provider connections, \(j.failed) failed |\n"
        }
        if let h = https {
            md += "| https | worker CPU per one-chunk job over HTTPS and HTTP/2 (\(h.jobs) jobs after \(h.warmUpJobs) of warm-up) | \(fmt(h.workerCPUMicrosPerJob, 1)) µs | \(fmt(Double(h.jobs) / h.seconds, 0)) jobs/s, \(h.failed) failed\(perJob.map { "; plain HTTP (per-job): " + fmt($0.workerCPUMicrosPerJob, 1) + " µs" } ?? "") |\n"
            md += "| https | TLS handshakes (connections accepted) per 100 jobs after warm-up | \(fmt(h.handshakesPer100Jobs, 2)) | \(h.connectionsOpened) during the \(h.jobs) jobs, \(h.warmUpConnectionsOpened) during the warm-up |\n"
            md += "| https | connections the jobs' requests came on; requests as HTTP/2 streams | \(h.connectionsUsed); \(h.http2Requests) of \(h.jobs) | |\n"
        }
        if let t = throughput, let bytes = t.chunkEventBytes {
            md += "\nA content chunk's event, as the gateway relays it from Redis, is \(bytes) bytes; the ceiling publishes \(ceiling?.payloadBytes ?? 300)-byte payloads.\n"
        }
        if let p = plots {
            md += "\n## Plots\n\n"
            md += p.skipped.map { "plots skipped: \($0)\n" }
                ?? p.figures.map { "![\($0.title)](\($0.path))\n" }.joined(separator: "\n")
        }

        md += """

            ## How each figure is measured

            - **throughput**: the bench produces every job to `sluice.requests` at once (up to 512 sends in \
            flight) and waits for every result on `sluice.results`; the window is the first send to the last \
            result. Each job streams a role chunk, the content chunks, a finish chunk and a usage chunk with no \
            pause; each is one PUBLISH and one XADD, so chunks/s counts all of them. Worker and gateway CPU are \
            `utime + stime` from `/proc/PID/stat`, the delta over the window. Every \(sizes.sseEvery)th job is \
            also followed with `GET /v1/jobs/{id}/events`.
            - **first-token**: the provider stamps the moment its write of the first content chunk has been \
            handed to the connection (NIO puts it on the socket after that, so the figure is an upper bound); \
            the reader stamps the moment those bytes come out of the HTTP client. Path: \
            \(firstToken.first?.path ?? "–"). At 1 stream the requests run one after another (5 chunks, 2 ms \
            apart). At N streams (\(sizes.firstTokenLevels.filter { $0 > 1 }.map(String.init).joined(separator: ", "))) N are \
            open at once (opened together, then a new one as each ends), over N streams or \(sizes.firstTokenSamples), \
            whichever is more; each first token comes 300–1000 ms in, so it arrives while the others are open \
            (10 chunks, 50 ms apart).
            - **concurrency**: slow streams produced at once to a worker with `max_in_flight` above their \
            number; worker VmRSS sampled every 50 ms; in flight = the most streams the provider had open at \
            once; lateness = the result's `latency_s` minus the scripted duration. The full run paces each \
            stream at one chunk a second, so all 10,000 are open together at a chunk rate this 2-core machine \
            sustains (10,000 chunks/s); at one chunk every 50 ms (200,000 chunks/s, beyond what Redis, the \
            worker and the provider sharing two cores can carry) streams queue, and neither the in-flight \
            count nor the lateness then measures the worker.
            - **pickup**: jobs produced one at a time; the provider's request arrival minus the moment before \
            the produce call.
            - **ceiling**: `redis-benchmark -c 50 PUBLISH` on the same redis-server, with and without `-P 16`. \
            The pipeline does a PUBLISH and an XADD per chunk, plus lifecycle events, so the ratio is a lower \
            bound of how close it runs to Redis.
            - **paced**: \(sizes.pacedStreams) `POST /v1/chat/completions` streams opened at once, each scripted \
            to \(sizes.pacedChunks) content chunks \(sizes.pacedPaceMs) ms apart, each chunk its own write by the \
            provider. Each reader finds every chunk's index in what it reads and records its arrival against \
            the chunk's own due time (the provider's schedule start for that stream + index × pace), so a \
            late stream start is not counted, a stream that falls behind is. A reader gives up \
            \(sizes.pacedChunks * sizes.pacedPaceMs / 1000 + sizes.pacedGraceSeconds + 30) s after its request (the \
            scripted \(sizes.pacedChunks * sizes.pacedPaceMs / 1000) s, \(sizes.pacedGraceSeconds) s of grace and 30 s for the \
            stream to start), and only delivered chunks count. CPU is \
            `utime + stime` of each process (and of its children) over the run, per content chunk delivered \
            and per `data:` frame read. The same load goes through LiteLLM when the peer runs; the CPU ratio \
            sets LiteLLM's CPU per chunk against the worker's plus the gateway's.
            - **per-job**: \(sizes.perJobJobs) one-chunk jobs produced at once (up to 512 sends in flight); \
            worker CPU over first send → last result, per job, with Kafka consume, Redis events, results \
            produce and the provider request all in it. Provider connections = distinct connections the \
            provider saw their requests on (libcurl keeps them alive between jobs).
            - **https**: the same provider served over HTTPS on a second port, HTTP/2 offered by ALPN, with a \
            self-signed certificate made at bench start and written to the run directory, which the worker's \
            config names as the provider's `ca_file` (verification on). \(sizes.httpsJobs) one-chunk jobs are \
            produced at once as a warm-up, then \(sizes.httpsJobs) more are measured as in per-job: worker CPU \
            over first send → last result, per job. TLS handshakes = connections the HTTPS port accepted during \
            the measured jobs (a connection is one handshake; libcurl reuses connections, and so their TLS \
            sessions, across jobs); the requests' connections and HTTP/2 streams are read off each request's \
            channel.
            - **peer**: the LiteLLM proxy (`pip install --target .deps/litellm litellm[proxy]`, one worker) with \
            the same provider as an OpenAI-compatible model, read by the same readers at the same loads.

            Latencies are HdrHistograms (1 µs resolution, 3 significant digits).

            ## Reproduce

            ```sh
            swift build -c release
            .build/release/sluice bench                      # every scenario, writes BENCHMARKS.md
            .build/release/sluice bench --scenario first-token --output /tmp/ft.md
            .build/release/sluice bench --quick              # small counts, under a minute, writes to a temp file
            ```

            This run: `\(commandLine)`. Logs of the stack: `\(logDir)`.

            """
        return md
    }

    /// The peer's first-token overhead at the same level as `sluice`, as a ratio.
    private func peerCell(_ sluice: FirstTokenResult) -> String {
        let theirs = peer?.firstToken.first { $0.streams == sluice.streams }
        guard let p50 = Self.ratio(theirs?.latency.p50Ms, sluice.latency.p50Ms) else {
            return peer?.skipped != nil ? "LiteLLM: skipped" : "–"
        }
        let p99 = Self.ratio(theirs?.latency.p99Ms, sluice.latency.p99Ms).map { fmt($0, 1) } ?? "–"
        return "LiteLLM \(fmt(p50, 1))× (p50), \(p99)× (p99) slower"
    }
}

func fmt(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "–" }
    return String(format: "%.\(digits)f", value)
}

func lat(_ s: LatencySummary) -> String {
    s.count == 0 ? "–" : "\(fmt(s.p50Ms, 3)) / \(fmt(s.p90Ms, 3)) / \(fmt(s.p99Ms, 3)) / \(fmt(s.maxMs, 3)) ms"
}

func mib(_ bytes: Int) -> String { fmt(Double(bytes) / 1_048_576, 1) + " MiB" }

