// The worker's chunk path (provider SSE bytes in → the event's Redis command out) and
// the gateway's relay (event envelope in → SSE frame out), per chunk: instructions,
// mallocs and wall time. `AllocationTests` in the main package holds the malloc counts.
import Benchmark
import Hummingbird
import SluiceCore
import SluiceGateway
import SluiceWorker

/// A content chunk as the bench's provider (and OpenAI) sends it: one SSE event.
func providerChunk(_ index: Int) -> [UInt8] {
    let json = #"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","service_tier":"default","system_fingerprint":"fp_bench00001","choices":[{"index":0,"delta":{"content":"Tk\#(index) "},"logprobs":null,"finish_reason":null}]}"#
    return Array(("data: " + json + "\n\n").utf8)
}

/// The envelope of content chunk `index` as the worker publishes it.
func envelope(_ index: Int) -> [UInt8] {
    let data = Array(#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","choices":[{"index":0,"delta":{"content":"Tk\#(index) "},"logprobs":null,"finish_reason":null}]}"#.utf8)
    var out: [UInt8] = []
    EventEnvelope.write(prefix: EventEnvelope.prefix(jobID: "bench-job", run: "run-1"), seq: index + 1, event: .chunk, data: data, ts: 1_764_000_000.5, into: &out)
    return out
}

nonisolated(unsafe) let benchmarks = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.instructions, .mallocCountTotal, .wallClock, .throughput],
        scalingFactor: .kilo,
        maxDuration: .seconds(3))

    // One chunk per scaled iteration: the figures are per chunk.
    Benchmark("worker chunk path: SSE bytes → Redis command") { benchmark in
        let reads = (0..<1_000).map(providerChunk)
        let path = try ChunkPath()
        try path.feed(reads[0])
        benchmark.startMeasurement()
        for i in benchmark.scaledIterations {
            try blackHole(path.feed(reads[i % reads.count]))
        }
    }

    for (name, route) in [("events", RelayPath.Route.events), ("chat completions", .chatCompletions)] {
        Benchmark("gateway relay (\(name)): envelope → SSE frame") { benchmark in
            let envelopes = (0..<1_000).map(envelope)
            var relay = RelayPath(route: route)
            var buffer = ByteBuffer()
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations {
                blackHole(relay.relay(envelopes[i % envelopes.count], into: &buffer))
                buffer.clear()
            }
        }
    }
}
