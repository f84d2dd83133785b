import Foundation
import Logging
import SluiceHTTPClient
import SluiceSupport

/// The figures of each scenario, as the JSON summary and BENCHMARKS.md show them.
public struct ThroughputResult: Sendable, Codable {
    var jobs: Int
    var contentChunksPerJob: Int
    var relayedChunks: Int
    var seconds: Double
    var jobsPerSecond: Double
    var chunksPerSecond: Double
    var workerCPUSeconds: Double
    var workerCPUSecondsPer1000Chunks: Double
    var workerCPUMicrosPerChunk: Double
    var sseStreams: Int
    var sseChunks: Int
    var gatewayCPUSeconds: Double
    var gatewayCPUSecondsPer1000SSEChunks: Double?
    var failed: Int
    var chunkEventBytes: Int?

    enum CodingKeys: String, CodingKey {
        case jobs, seconds, failed
        case contentChunksPerJob = "content_chunks_per_job"
        case relayedChunks = "relayed_chunks"
        case jobsPerSecond = "jobs_per_s"
        case chunksPerSecond = "chunks_per_s"
        case workerCPUSeconds = "worker_cpu_s"
        case workerCPUSecondsPer1000Chunks = "worker_cpu_s_per_1000_chunks"
        case workerCPUMicrosPerChunk = "worker_cpu_us_per_chunk"
        case sseStreams = "sse_streams"
        case sseChunks = "sse_chunks"
        case gatewayCPUSeconds = "gateway_cpu_s"
        case gatewayCPUSecondsPer1000SSEChunks = "gateway_cpu_s_per_1000_sse_chunks"
        case chunkEventBytes = "chunk_event_bytes"
    }
}

public struct FirstTokenResult: Sendable, Codable {
    var path: String
    var streams: Int
    var latency: LatencySummary
    var errors: Int
}

public struct ConcurrencyResult: Sendable, Codable {
    var jobs: Int
    var chunksPerJob: Int
    var paceMs: Int
    var peakInFlight: Int
    var idleRSSBytes: Int
    var peakRSSBytes: Int
    var rssBytesPerInFlightJob: Double
    var lateness: LatencySummary
    /// The last chunk's lateness against the first one's: result latency minus time to
    /// first token minus the scripted gap between them. Leaves out how long the request
    /// waited for the provider to take it.
    var streamLateness: LatencySummary
    var seconds: Double
    var failed: Int
    /// Worker RSS against streams in flight over the run, for the plot; left out of the
    /// JSON summary, which stays one short line.
    var memory: [MemorySample] = []

    enum CodingKeys: String, CodingKey {
        case jobs, lateness, seconds, failed
        case streamLateness = "stream_lateness"
        case chunksPerJob = "chunks_per_job"
        case paceMs = "pace_ms"
        case peakInFlight = "peak_in_flight"
        case idleRSSBytes = "idle_rss_bytes"
        case peakRSSBytes = "peak_rss_bytes"
        case rssBytesPerInFlightJob = "rss_bytes_per_in_flight_job"
    }
}

/// One reading of the concurrency scenario's sampler.
public struct MemorySample: Sendable, Codable {
    /// Since the jobs started to be produced.
    var seconds: Double
    var rssBytes: Int
    /// Streams the provider had open at that moment.
    var inFlight: Int

    enum CodingKeys: String, CodingKey {
        case seconds = "t_s"
        case rssBytes = "rss_bytes"
        case inFlight = "in_flight"
    }
}

public struct PickupResult: Sendable, Codable {
    var jobs: Int
    var latency: LatencySummary
}

public struct CeilingResult: Sendable, Codable {
    var payloadBytes: Int
    var clients: Int
    var publishPerSecond: Double
    var publishPipelined16PerSecond: Double

    enum CodingKeys: String, CodingKey {
        case clients
        case payloadBytes = "payload_bytes"
        case publishPerSecond = "publish_per_s"
        case publishPipelined16PerSecond = "publish_pipelined16_per_s"
    }
}

public struct PeerResult: Sendable, Codable {
    var name: String
    var version: String?
    var firstToken: [FirstTokenResult]
    /// The paced scenario's load through the peer.
    var paced: PacedResult?
    var skipped: String?

    enum CodingKeys: String, CodingKey {
        case name, version, skipped, paced
        case firstToken = "first_token"
    }
}

/// One run of the scenarios against one stack.
struct Scenarios: Sendable {
    let stack: BenchStack
    let client: PipelineClient
    let provider: TimestampingProvider.Running
    let logger: Logger
    let runID: String

    func token(_ scenario: String, _ index: Int) -> String { "\(scenario)-\(runID)-\(index)" }

    /// One job through Kafka and one stream through the gateway, so the worker has joined
    /// its group and every connection is warm before anything is timed.
    func warmUp() async throws {
        let id = token("warm", 0)
        try await client.produce(id: id, script: BenchScript(token: id, chunks: 2))
        _ = try await client.waitForResults([id], timeout: .seconds(90))
        for i in 1...3 {
            let script = BenchScript(token: token("warm", i), chunks: 2)
            _ = try await client.readStream(
                PipelineClient.chatCompletionRequest(url: stack.gatewayURL + "/v1/chat/completions", script: script), counting: "data: ")
        }
    }

    /// Whether the gateway serves `POST /v1/chat/completions` (else jobs + events are used).
    func gatewayHasChatCompletions() async -> Bool {
        let script = BenchScript(token: token("probe", 0), chunks: 1)
        guard let reading = try? await client.readStream(
            PipelineClient.chatCompletionRequest(url: stack.gatewayURL + "/v1/chat/completions", script: script), counting: "data: ")
        else { return false }
        return reading.status == 200
    }

    // MARK: throughput

    func throughput(jobs: Int, chunks: Int, sseEvery: Int) async throws -> ThroughputResult {
        let list = (0..<jobs).map { i in (id: token("tp", i), script: BenchScript(token: token("tp", i), chunks: chunks)) }
        let ids = list.map(\.id)
        let workerCPU0 = ProcStats.cpuSeconds(pid: stack.worker.pid) ?? 0
        let gatewayCPU0 = ProcStats.cpuSeconds(pid: stack.gateway.pid) ?? 0
        let gateway = stack.gatewayURL
        let client = self.client

        let (readings, start) = try await withThrowingTaskGroup(of: StreamReading?.self) { group in
            // SSE readers on a subset, each following its job from before it is produced.
            for i in stride(from: 0, to: jobs, by: sseEvery) {
                let id = list[i].id
                let keep = i == 0
                group.addTask { try await client.followEvents(gateway: gateway, jobID: id, keepText: keep) }
            }
            let start = try await client.produceAll(list)
            var readings: [StreamReading] = []
            for try await r in group { if let r { readings.append(r) } }
            return (readings, start)
        }
        let records = try await client.waitForResults(ids, timeout: .seconds(300))
        let workerCPU = (ProcStats.cpuSeconds(pid: stack.worker.pid) ?? 0) - workerCPU0
        let gatewayCPU = (ProcStats.cpuSeconds(pid: stack.gateway.pid) ?? 0) - gatewayCPU0
        let end = records.values.map(\.arrivalNs).max() ?? start
        let seconds = Double(end - start) / 1e9
        // Role, content, finish and usage chunks: each is one PUBLISH and one XADD.
        let relayed = jobs * (chunks + 3)
        let sseChunks = readings.reduce(0) { $0 + $1.counted }
        let badSSE = readings.filter { $0.status != 200 }
        if !badSSE.isEmpty { logger.warning("\(badSSE.count) SSE readers got status \(badSSE[0].status): \(badSSE[0].text ?? "")") }
        client.board.forget(ids)
        provider.ledger.forget(ids)
        return ThroughputResult(
            jobs: jobs, contentChunksPerJob: chunks, relayedChunks: relayed, seconds: seconds,
            jobsPerSecond: Double(jobs) / seconds, chunksPerSecond: Double(relayed) / seconds,
            workerCPUSeconds: workerCPU, workerCPUSecondsPer1000Chunks: workerCPU / Double(relayed) * 1000,
            workerCPUMicrosPerChunk: workerCPU / Double(relayed) * 1e6,
            sseStreams: readings.count, sseChunks: sseChunks, gatewayCPUSeconds: gatewayCPU,
            gatewayCPUSecondsPer1000SSEChunks: sseChunks > 0 ? gatewayCPU / Double(sseChunks) * 1000 : nil,
            failed: records.values.filter { $0.status != "succeeded" }.count,
            chunkEventBytes: readings.compactMap(\.text).first.flatMap(Self.chunkEventBytes))
    }

    /// The size of one content chunk's event as the gateway relays it from Redis.
    static func chunkEventBytes(_ sse: String) -> Int? {
        sse.split(separator: "\n").first { $0.hasPrefix("data: ") && $0.contains("Tk1 ") }.map { $0.utf8.count - 6 }
    }

    // MARK: first token

    enum StreamPath: String {
        case chatCompletions = "POST /v1/chat/completions (stream: true)"
        case jobsAndEvents = "POST /v1/jobs + GET /v1/jobs/{id}/events"
        case peer = "peer: POST /v1/chat/completions (stream: true)"
    }

    /// Provider's first content chunk written → the reader has it, for `total` streams of
    /// which `concurrency` are open at once.
    func firstToken(label: String, path: StreamPath, baseURL: String, bearer: String = "sk-bench", concurrency: Int, total: Int) async throws -> FirstTokenResult {
        let client = self.client
        let ledger = provider.ledger
        let runID = self.runID
        let stream: @Sendable (Int) async -> Int64? = { i in
            let tok = "\(label)-\(runID)-\(i)"
            // Under load the first token comes once every stream is open: 300–1000 ms in.
            let script = concurrency == 1
                ? BenchScript(token: tok, chunks: 5, paceMs: 2)
                : BenchScript(token: tok, chunks: 10, paceMs: 50, firstDelayMs: 300 + (i * 7919) % 700)
            do {
                let reading: StreamReading
                switch path {
                case .chatCompletions, .peer:
                    reading = try await client.readStream(
                        PipelineClient.chatCompletionRequest(url: baseURL + "/v1/chat/completions", script: script, bearer: bearer),
                        counting: "data: ")
                case .jobsAndEvents:
                    let submitted = try await client.http.execute(PipelineClient.submitRequest(gateway: baseURL, id: tok, script: script))
                    _ = try await submitted.body.collect(upTo: 1 << 16)
                    guard submitted.status == 202 else { return nil }
                    reading = try await client.followEvents(gateway: baseURL, jobID: tok)
                }
                guard reading.status == 200, let got = reading.firstTokenNs, let sent = ledger.stamp(tok)?.firstContentNs else { return nil }
                ledger.forget([tok])
                return Int64(bitPattern: got &- sent)
            } catch {
                return nil
            }
        }
        var histogram = LatencyHistogram()
        var errors = 0
        if concurrency == 1 {
            for i in 0..<total {
                if let d = await stream(i) { histogram.record(nanoseconds: d) } else { errors += 1 }
            }
        } else {
            await withTaskGroup(of: Int64?.self) { group in
                for i in 0..<total {
                    if i >= concurrency, let d = await group.next() {
                        if let d { histogram.record(nanoseconds: d) } else { errors += 1 }
                    }
                    group.addTask { await stream(i) }
                }
                for await d in group {
                    if let d { histogram.record(nanoseconds: d) } else { errors += 1 }
                }
            }
        }
        if errors > 0 { logger.warning("\(errors) of \(total) \(label) streams failed or saw no first token") }
        return FirstTokenResult(path: path.rawValue, streams: concurrency, latency: histogram.summary, errors: errors)
    }

    // MARK: concurrency

    func concurrency(jobs: Int, chunks: Int, paceMs: Int) async throws -> ConcurrencyResult {
        let list = (0..<jobs).map { i in (id: token("cc", i), script: BenchScript(token: token("cc", i), chunks: chunks, paceMs: paceMs)) }
        let ids = list.map(\.id)
        let pid = stack.worker.pid
        try await Task.sleep(for: .seconds(1))
        let idle = ProcStats.rssBytes(pid: pid) ?? 0
        provider.ledger.resetPeak()
        let ledger = provider.ledger
        let started = ContinuousClock.now
        let memory = try await withThrowingTaskGroup(of: [MemorySample].self) { group in
            group.addTask {
                var samples: [MemorySample] = []
                func sample() {
                    guard let rss = ProcStats.rssBytes(pid: pid) else { return }
                    samples.append(MemorySample(
                        seconds: (ContinuousClock.now - started) / .seconds(1), rssBytes: rss, inFlight: ledger.openStreams))
                }
                while !Task.isCancelled {
                    sample()
                    try? await Task.sleep(for: .milliseconds(50))
                }
                sample()
                return samples
            }
            try await client.produceAll(list)
            _ = try await client.waitForResults(ids, timeout: .seconds(600))
            group.cancelAll()
            return try await group.next() ?? []
        }
        let peakRSS = max(idle, memory.map(\.rssBytes).max() ?? 0)
        let records = client.board.records(ids)
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        let scripted = Double((chunks - 1) * paceMs) / 1000
        var lateness = LatencyHistogram()
        var streamLateness = LatencyHistogram()
        let afterFirst = Double((chunks - 1) * paceMs) / 1000
        for r in records.values where r.status == "succeeded" {
            if let l = r.latencySeconds { lateness.record(nanoseconds: Int64(max(0, l - scripted) * 1e9)) }
            if let l = r.latencySeconds, let first = r.timeToFirstTokenSeconds {
                streamLateness.record(nanoseconds: Int64(max(0, l - first - afterFirst) * 1e9))
            }
        }
        let peakInFlight = max(1, ledger.peakOpenStreams)
        client.board.forget(ids)
        ledger.forget(ids)
        return ConcurrencyResult(
            jobs: jobs, chunksPerJob: chunks, paceMs: paceMs, peakInFlight: ledger.peakOpenStreams, idleRSSBytes: idle,
            peakRSSBytes: peakRSS, rssBytesPerInFlightJob: Double(peakRSS - idle) / Double(peakInFlight),
            lateness: lateness.summary, streamLateness: streamLateness.summary, seconds: seconds,
            failed: records.values.filter { $0.status != "succeeded" }.count, memory: memory)
    }

    // MARK: pickup

    func pickup(jobs: Int) async throws -> PickupResult {
        var histogram = LatencyHistogram()
        var ids: [String] = []
        for i in 0..<jobs {
            let id = token("pu", i)
            ids.append(id)
            let produced = MonotonicClock.nanoseconds()
            try await client.produce(id: id, script: BenchScript(token: id, chunks: 1))
            let deadline = ContinuousClock.now + .seconds(30)
            var stamp = provider.ledger.stamp(id)
            while stamp == nil && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(1))
                stamp = provider.ledger.stamp(id)
            }
            guard let stamp else { throw BenchError("job \(id) never reached the provider within 30 s") }
            histogram.record(nanoseconds: Int64(stamp.requestNs) - Int64(produced))
            try await Task.sleep(for: .milliseconds(15))
        }
        _ = try await client.waitForResults(ids, timeout: .seconds(60))
        client.board.forget(ids)
        provider.ledger.forget(ids)
        return PickupResult(jobs: jobs, latency: histogram.summary)
    }
}

// MARK: paced

/// Paced streams read to the end: every content chunk's arrival at its reader against
/// its own due time, and the CPU each process spent per chunk delivered.
public struct PacedResult: Sendable, Codable {
    var path: String
    var streams: Int
    var chunksPerStream: Int
    var paceMs: Int
    var seconds: Double
    var expectedChunks: Int
    /// Content chunks that reached their readers before the run's deadline.
    var deliveredChunks: Int
    /// `data:` frames the readers got (content, role, finish, usage, `[DONE]`).
    var sseFrames: Int
    var lateness: LatencySummary
    /// How late the provider itself handed each chunk to its connection: its own delay
    /// on this shared machine plus back-pressure from the reader of its stream.
    var providerWriteLateness: LatencySummary
    var failedStreams: Int
    /// CPU seconds over the run, by process (`worker`, `gateway`, `litellm`, `redis`, and
    /// `bench`: the provider and the readers, in this process).
    var cpuSeconds: [String: Double]

    /// The share of the machine's CPUs the measured processes kept busy over the run: near
    /// 1 means lateness is the queue of a saturated machine, not of one process.
    var machineBusy: Double? {
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        guard seconds > 0, cores > 0 else { return nil }
        return cpuSeconds.values.reduce(0, +) / seconds / cores
    }

    func cpuMicrosPerChunk(_ process: String) -> Double? {
        guard let s = cpuSeconds[process], deliveredChunks > 0 else { return nil }
        return s / Double(deliveredChunks) * 1e6
    }

    func cpuMicrosPerFrame(_ process: String) -> Double? {
        guard let s = cpuSeconds[process], sseFrames > 0 else { return nil }
        return s / Double(sseFrames) * 1e6
    }

    enum CodingKeys: String, CodingKey {
        case path, streams, seconds, lateness
        case chunksPerStream = "chunks_per_stream"
        case paceMs = "pace_ms"
        case expectedChunks = "expected_chunks"
        case deliveredChunks = "delivered_chunks"
        case sseFrames = "sse_frames"
        case providerWriteLateness = "provider_write_lateness"
        case failedStreams = "failed_streams"
        case cpuSeconds = "cpu_s"
    }
}

/// One-chunk jobs, many at a time: the worker's CPU per job, Kafka and Redis included.
public struct PerJobResult: Sendable, Codable {
    var jobs: Int
    var seconds: Double
    var workerCPUSeconds: Double
    var workerCPUMicrosPerJob: Double
    /// Connections the provider saw the jobs' requests come on.
    var providerConnections: Int
    var failed: Int

    enum CodingKeys: String, CodingKey {
        case jobs, seconds, failed
        case workerCPUSeconds = "worker_cpu_s"
        case workerCPUMicrosPerJob = "worker_cpu_us_per_job"
        case providerConnections = "provider_connections"
    }
}

extension Scenarios {
    /// `streams` streams opened at once through `baseURL`'s chat completions, each of
    /// `chunks` content chunks `paceMs` apart, every chunk its own write. A reader gives
    /// up its schedule + `grace` + 30 s (for the stream to start) after its request; what
    /// it read until then counts.
    func paced(
        label: String, path: StreamPath, baseURL: String, bearer: String = "sk-bench", streams: Int, chunks: Int, paceMs: Int,
        grace: Duration, processes: [String: Int32]
    ) async -> PacedResult {
        let client = self.client
        let ledger = provider.ledger
        let runID = self.runID
        let scripted = Duration.milliseconds(chunks * paceMs)
        ledger.resetConnectionsAndLateness()
        struct Reading: Sendable {
            var lateness = LatencyHistogram()
            var delivered = 0
            var frames = 0
            var failed = false
        }
        // The bench process is the parent of the whole stack: count its own threads only.
        let own = getpid()
        func cpu() -> [String: Double] {
            processes.mapValues { pid in (pid == own ? ProcStats.cpuSeconds(pid: pid) : ProcStats.treeCPUSeconds(pid: pid)) ?? 0 }
        }
        let cpu0 = cpu()
        let started = ContinuousClock.now
        let readings = await withTaskGroup(of: Reading.self, returning: [Reading].self) { group in
            for i in 0..<streams {
                group.addTask {
                    let token = "\(label)-\(runID)-\(i)"
                    let script = BenchScript(token: token, chunks: chunks, paceMs: paceMs)
                    var reading = Reading()
                    var scanner = ChunkIndexScanner()
                    var frames = PatternCounter("data: ")
                    var scheduleStart: UInt64?
                    do {
                        let response = try await client.http.execute(PipelineClient.chatCompletionRequest(
                            url: baseURL + "/v1/chat/completions", script: script, bearer: bearer,
                            totalTimeout: scripted + grace + .seconds(30)))
                        guard response.status == 200 else {
                            reading.failed = true
                            return reading
                        }
                        for try await piece in response.body {
                            let now = MonotonicClock.nanoseconds()
                            reading.frames += frames.feed(piece)
                            scanner.feed(piece) { index in
                                if scheduleStart == nil { scheduleStart = ledger.stamp(token)?.scheduleStartNs }
                                guard let start = scheduleStart else { return }
                                let due = start + UInt64(index * paceMs) * 1_000_000
                                reading.lateness.record(nanoseconds: now > due ? Int64(now - due) : 0)
                                reading.delivered += 1
                            }
                        }
                        if reading.delivered < chunks { reading.failed = true }
                    } catch {
                        reading.failed = true
                    }
                    ledger.forget([token])
                    return reading
                }
            }
            var all: [Reading] = []
            for await r in group { all.append(r) }
            return all
        }
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        let cpu1 = cpu()
        var lateness = LatencyHistogram()
        for r in readings { lateness.add(r.lateness) }
        let failed = readings.filter(\.failed).count
        if failed > 0 { logger.warning("\(failed) of \(streams) \(label) streams failed or were cut before their end") }
        return PacedResult(
            path: path.rawValue, streams: streams, chunksPerStream: chunks, paceMs: paceMs, seconds: seconds,
            expectedChunks: streams * chunks, deliveredChunks: readings.reduce(0) { $0 + $1.delivered },
            sseFrames: readings.reduce(0) { $0 + $1.frames }, lateness: lateness.summary,
            providerWriteLateness: ledger.pacedWriteLateness, failedStreams: failed,
            cpuSeconds: cpu1.reduce(into: [String: Double]()) { $0[$1.key] = $1.value - (cpu0[$1.key] ?? 0) })
    }

    // MARK: per-job

    func perJob(jobs: Int) async throws -> PerJobResult {
        let list = (0..<jobs).map { i in (id: token("pj", i), script: BenchScript(token: token("pj", i), chunks: 1)) }
        let ids = list.map(\.id)
        provider.ledger.resetConnectionsAndLateness()
        let workerCPU0 = ProcStats.cpuSeconds(pid: stack.worker.pid) ?? 0
        let start = try await client.produceAll(list)
        let records = try await client.waitForResults(ids, timeout: .seconds(300))
        let workerCPU = (ProcStats.cpuSeconds(pid: stack.worker.pid) ?? 0) - workerCPU0
        let end = records.values.map(\.arrivalNs).max() ?? start
        client.board.forget(ids)
        provider.ledger.forget(ids)
        return PerJobResult(
            jobs: jobs, seconds: Double(end - start) / 1e9, workerCPUSeconds: workerCPU,
            workerCPUMicrosPerJob: workerCPU / Double(jobs) * 1e6, providerConnections: provider.ledger.connectionCount,
            failed: records.values.filter { $0.status != "succeeded" }.count)
    }
}

// MARK: https

/// One-chunk jobs against the provider over HTTPS with HTTP/2: what a provider
/// connection costs the worker once connections and TLS sessions are reused.
public struct HTTPSResult: Sendable, Codable {
    var jobs: Int
    var warmUpJobs: Int
    var seconds: Double
    var workerCPUSeconds: Double
    var workerCPUMicrosPerJob: Double
    /// Connections the provider's HTTPS port accepted during the measured jobs, each a
    /// TLS handshake; and during the warm-up.
    var connectionsOpened: Int
    var warmUpConnectionsOpened: Int
    var handshakesPer100Jobs: Double
    /// Distinct connections the measured jobs' requests came on.
    var connectionsUsed: Int
    /// The measured jobs' requests that came as HTTP/2 streams.
    var http2Requests: Int
    var failed: Int

    enum CodingKeys: String, CodingKey {
        case jobs, seconds, failed
        case warmUpJobs = "warm_up_jobs"
        case workerCPUSeconds = "worker_cpu_s"
        case workerCPUMicrosPerJob = "worker_cpu_us_per_job"
        case connectionsOpened = "connections_opened"
        case warmUpConnectionsOpened = "warm_up_connections_opened"
        case handshakesPer100Jobs = "tls_handshakes_per_100_jobs"
        case connectionsUsed = "connections_used"
        case http2Requests = "http2_requests"
    }
}

extension Scenarios {
    /// `jobs` one-chunk jobs produced at once against the HTTPS provider, twice: the first
    /// batch warms the worker's connections up, the second is measured the way `per-job`
    /// is (worker CPU from the first send to the last result), with the connections (and
    /// so TLS handshakes) the provider accepted meanwhile.
    func https(jobs: Int) async throws -> HTTPSResult {
        let ledger = provider.ledger
        func batch(_ name: String) async throws -> (ids: [String], start: UInt64, records: [String: ResultRecord]) {
            let list = (0..<jobs).map { i in (id: token(name, i), script: BenchScript(token: token(name, i), chunks: 1)) }
            let ids = list.map(\.id)
            let start = try await client.produceAll(list, model: BenchStack.secureModel)
            let records = try await client.waitForResults(ids, timeout: .seconds(300))
            return (ids, start, records)
        }
        ledger.resetConnectionsAndLateness()
        let warm = try await batch("hw")
        let warmFailed = warm.records.values.filter { $0.status != "succeeded" }.count
        if warmFailed > 0 { throw BenchError("\(warmFailed) of \(jobs) https warm-up jobs failed; see the worker's log in \(client.children.logDir.path)") }
        let warmConnections = ledger.acceptedSecureConnections
        client.board.forget(warm.ids)
        ledger.forget(warm.ids)

        ledger.resetConnectionsAndLateness()
        let workerCPU0 = ProcStats.cpuSeconds(pid: stack.worker.pid) ?? 0
        let measured = try await batch("hs")
        let workerCPU = (ProcStats.cpuSeconds(pid: stack.worker.pid) ?? 0) - workerCPU0
        let end = measured.records.values.map(\.arrivalNs).max() ?? measured.start
        let opened = ledger.acceptedSecureConnections
        client.board.forget(measured.ids)
        ledger.forget(measured.ids)
        return HTTPSResult(
            jobs: jobs, warmUpJobs: jobs, seconds: Double(end - measured.start) / 1e9, workerCPUSeconds: workerCPU,
            workerCPUMicrosPerJob: workerCPU / Double(jobs) * 1e6, connectionsOpened: opened,
            warmUpConnectionsOpened: warmConnections, handshakesPer100Jobs: Double(opened) / Double(jobs) * 100,
            connectionsUsed: ledger.connectionCount, http2Requests: ledger.http2RequestCount,
            failed: measured.records.values.filter { $0.status != "succeeded" }.count)
    }
}
