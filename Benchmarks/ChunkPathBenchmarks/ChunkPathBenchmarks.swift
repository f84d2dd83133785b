// The worker's chunk path (one provider SSE `data:` line in → the event's Redis command
// out) and the gateway's relay (one Redis pub/sub message in → its SSE frame out), with
// ordo-one's benchmark: instructions (where the machine exposes hardware counters), the
// measuring thread's CPU time, wall time and mallocs. Each iteration is 1,000 chunks
// (`scalingFactor: .kilo`); the figures marked `*` in the output are per chunk. The code
// measured is
// the code the worker and the gateway run, through `ChunkPath` and `RelayPath`; the
// `AllocationTests` suite in the main package holds their malloc counts in `make test`.
import Benchmark
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import SluiceCore
import SluiceGateway
import SluiceWorker

/// A content chunk as the bench's provider (and OpenAI) sends it: one SSE event.
func providerChunk(_ index: Int) -> [UInt8] {
    let json = #"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","service_tier":"default","system_fingerprint":"fp_bench00001","choices":[{"index":0,"delta":{"content":"Tk\#(index) "},"logprobs":null,"finish_reason":null}]}"#
    return Array(("data: " + json + "\n\n").utf8)
}

/// The first chunk of a stream, which carries the role.
let roleChunk = Array(#"data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#.utf8) + Array("\n\n".utf8)

/// The envelope of content chunk `index` as the worker publishes it and the gateway's
/// Redis subscriber hands it over.
func envelope(_ index: Int) -> [UInt8] {
    let data = Array(#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","choices":[{"index":0,"delta":{"content":"Tk\#(index) "},"logprobs":null,"finish_reason":null}]}"#.utf8)
    var out: [UInt8] = []
    EventEnvelope.write(prefix: EventEnvelope.prefix(jobID: "chunk-path-job", run: "run-1"), seq: index + 1, event: .chunk, data: data, ts: 1_764_000_000.5, into: &out)
    return out
}

/// One stream that lasts the whole benchmark, opened on its first (warm-up) iteration:
/// `ChunkPath` starts its idle Redis connection's thread, and that thread's start-up
/// allocations must not land in a measured iteration. The mallocs are counted across
/// the process, as the benchmark's interposer does.
final class WorkerStream {
    let path: ChunkPath
    let reads = (0..<1_000).map(providerChunk)
    var next = 0

    init() throws {
        path = try ChunkPath()
        try path.feed(roleChunk)
    }
}

/// One follower of one job for the whole benchmark, with the buffer its body writes
/// send and clear.
final class GatewayStream {
    var relay: RelayPath
    var buffer = ByteBuffer()
    let envelopes = (0..<1_000).map(envelope)
    var next = 0
    var relayed = 0

    init(route: RelayPath.Route) {
        relay = RelayPath(route: route)
    }
}

/// The framework's CPU metrics read the process's scheduler ticks (10 ms on Linux), far
/// coarser than an iteration; this is the measuring thread's own CPU time, in ns.
let threadCPU = BenchmarkMetric.custom("Thread CPU (ns)", polarity: .prefersSmaller, useScalingFactor: true)

func threadCPUNanoseconds() -> Int {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return now.tv_sec * 1_000_000_000 + now.tv_nsec
}

nonisolated(unsafe) let benchmarks = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.instructions, threadCPU, .wallClock, .mallocCountTotal, .throughput],
        warmupIterations: 1,
        scalingFactor: .kilo,
        maxDuration: .seconds(2))

    var worker: WorkerStream?
    Benchmark("worker chunk path: provider SSE line → Redis command") { benchmark in
        if worker == nil { worker = try WorkerStream() }
        let stream = worker!
        let before = stream.path.commands
        benchmark.startMeasurement()
        let cpu = threadCPUNanoseconds()
        for _ in benchmark.scaledIterations {
            try blackHole(stream.path.feed(stream.reads[stream.next]))
            stream.next = stream.next == stream.reads.count - 1 ? 0 : stream.next + 1
        }
        benchmark.measurement(threadCPU, threadCPUNanoseconds() - cpu)
        benchmark.stopMeasurement()
        // Every chunk made its Redis command: the work measured is the real work.
        let made = stream.path.commands - before
        if made != benchmark.scaledIterations.count {
            benchmark.error("\(benchmark.scaledIterations.count) provider chunks made \(made) Redis commands")
        }
    }

    for (name, route) in [("events", RelayPath.Route.events), ("chat completions", .chatCompletions)] {
        var gateway: GatewayStream?
        Benchmark("gateway relay (\(name)): Redis message → SSE frame") { benchmark in
            if gateway == nil { gateway = GatewayStream(route: route) }
            let stream = gateway!
            var relayed = 0
            var bytes = 0
            benchmark.startMeasurement()
            let cpu = threadCPUNanoseconds()
            for _ in benchmark.scaledIterations {
                if stream.relay.relay(stream.envelopes[stream.next], into: &stream.buffer) { relayed += 1 }
                bytes += stream.buffer.readableBytes
                stream.buffer.clear()
                stream.next = stream.next == stream.envelopes.count - 1 ? 0 : stream.next + 1
            }
            benchmark.measurement(threadCPU, threadCPUNanoseconds() - cpu)
            benchmark.stopMeasurement()
            // Every message became a frame.
            if relayed != benchmark.scaledIterations.count || bytes == 0 {
                benchmark.error("\(benchmark.scaledIterations.count) messages made \(relayed) frames (\(bytes) bytes)")
            }
        }
    }
}
