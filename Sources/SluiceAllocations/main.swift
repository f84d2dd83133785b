// `SluiceAllocations`: counts the heap allocations of the worker's chunk path and the
// gateway's relay, per chunk, and prints them as one JSON line. Run it with the malloc
// interposer preloaded (`LD_PRELOAD=.../libMallocInterposerSwift.so`); the
// `AllocationTests` suite does, and holds the counts to the figures it states.
//
// Only allocations made on this thread between the two marks are counted, so a thread
// of the runtime that wakes meanwhile does not change the figure.
import Foundation
import MallocInterposerSwift
import Hummingbird
import SluiceCore
import SluiceGateway
import SluiceWorker

#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) var measuredThread = pthread_self()
nonisolated(unsafe) var measuring = false
nonisolated(unsafe) var counted = 0

nonisolated(unsafe) let countOnMeasuredThread: MallocInterposerSwift.AllocationHook = { _ in
    if measuring, pthread_equal(pthread_self(), measuredThread) != 0 { counted += 1 }
}

/// Allocations `body` makes on this thread.
func allocations(_ body: () throws -> Void) rethrows -> Int {
    measuredThread = pthread_self()
    counted = 0
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.setAllocationHook(countOnMeasuredThread)
    measuring = true
    MallocInterposerSwift.hook()
    defer {
        MallocInterposerSwift.unhook()
        measuring = false
        MallocInterposerSwift.setAllocationHook(nil)
    }
    try body()
    return counted
}

let chunks = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 1_000
let warmUp = 50

/// A content chunk as the bench's provider (and OpenAI) sends it, one SSE event.
func providerChunk(_ index: Int) -> [UInt8] {
    let json = #"{"id":"chatcmpl-alloc","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","service_tier":"default","system_fingerprint":"fp_bench00001","choices":[{"index":0,"delta":{"content":"Tk\#(index) "},"logprobs":null,"finish_reason":null}]}"#
    return Array(("data: " + json + "\n\n").utf8)
}

// The worker: one provider chunk per read (a paced stream), parse → decode → accumulate →
// the event's RESP command.
let path = try ChunkPath()
let reads = (0..<(warmUp + chunks)).map(providerChunk)
let role = Array(#"data: {"id":"chatcmpl-alloc","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#.utf8) + Array("\n\n".utf8)
try path.feed(role)
for r in reads.prefix(warmUp) { try path.feed(r) }
let workerAllocations = try allocations {
    for r in reads.dropFirst(warmUp) { try path.feed(r) }
}
guard path.commands == warmUp + chunks + 1 else {
    FileHandle.standardError.write(Data("the chunk path made \(path.commands) commands for \(warmUp + chunks + 1) chunks\n".utf8))
    exit(1)
}

// The gateway: each chunk's envelope as the subscriber delivers it → its SSE frame, in
// the buffer a body write sends and then clears.
let prefix = EventEnvelope.prefix(jobID: "chunk-path-job", run: "run-1")
let envelopes: [[UInt8]] = (0..<(warmUp + chunks)).map { i in
    let data = Array(#"{"id":"chatcmpl-alloc","object":"chat.completion.chunk","created":1764000000,"model":"bench-1","choices":[{"index":0,"delta":{"content":"Tk\#(i) "},"logprobs":null,"finish_reason":null}]}"#.utf8)
    var out: [UInt8] = []
    EventEnvelope.write(prefix: prefix, seq: i + 1, event: .chunk, data: data, ts: 1_764_000_000.5, into: &out)
    return out
}
func relayAllocations(_ route: RelayPath.Route) -> Int {
    var relay = RelayPath(route: route)
    var buffer = ByteBuffer()
    for e in envelopes.prefix(warmUp) {
        _ = relay.relay(e, into: &buffer)
        buffer.clear()
    }
    var relayed = 0
    let count = allocations {
        for e in envelopes.dropFirst(warmUp) {
            if relay.relay(e, into: &buffer) { relayed += 1 }
            buffer.clear()
        }
    }
    guard relayed == chunks else {
        FileHandle.standardError.write(Data("the relay framed \(relayed) of \(chunks) envelopes\n".utf8))
        exit(1)
    }
    return count
}
let eventsAllocations = relayAllocations(.events)
let completionsAllocations = relayAllocations(.chatCompletions)

func perChunk(_ n: Int) -> Double { (Double(n) / Double(chunks) * 1000).rounded() / 1000 }
print(#"{"chunks":\#(chunks),"worker_mallocs_per_chunk":\#(perChunk(workerAllocations)),"gateway_events_mallocs_per_chunk":\#(perChunk(eventsAllocations)),"gateway_completions_mallocs_per_chunk":\#(perChunk(completionsAllocations))}"#)
