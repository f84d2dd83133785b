import Logging
import SluiceCore
import SluiceProviders
import SluiceRedis

/// The worker's per-chunk work with its I/O cut off at both ends: the provider's SSE
/// bytes in, as libcurl hands them over, and out the RESP command of each chunk's event,
/// as `ChunkRelay` queues it for Redis. The same steps `ProviderRunner`'s stream reader
/// and `ChunkRelay` take on the curl thread for each write of a stream (parse, decode,
/// accumulate, encode); the allocation test and the micro-benchmarks in `Benchmarks/`
/// measure it.
public final class ChunkPath {
    private var parser = SSEParser()
    private var decoder: any StreamDecoder
    private var accumulator = StreamAccumulator()
    private var events: JobEvents<RedisConnection>
    /// Commands written so far, one per relayed chunk.
    public private(set) var commands = 0
    /// The last command written, for a test to read back.
    public private(set) var lastCommand: RedisCommand?

    /// An OpenAI-compatible stream of job `jobID`. The events' Redis connection is made
    /// but never used: its thread connects only on a first command, and none is sent.
    public init(jobID: String = "chunk-path-job") throws {
        let kind = SluiceConfig.Provider.Kind.openaiCompatible
        let call = ProviderCall(
            provider: .init(name: "bench", kind: kind, baseURL: "http://127.0.0.1:9/v1"), model: "bench-1",
            messages: [], parameters: [:], stream: true, apiKey: nil)
        decoder = try WireFormats.format(for: kind).makeStreamDecoder(call)
        let redis = RedisConnection(configuration: try RedisConfiguration(url: "redis://127.0.0.1:9"), logger: Logger(label: "chunk-path"))
        events = JobEvents(jobID: jobID, run: "run-1", tenant: "tenant", redis: redis, ttlSeconds: 600, lastSeq: 0)
    }

    /// Feeds bytes as the provider sent them; returns the commands they made.
    @discardableResult
    public func feed(_ bytes: [UInt8]) throws -> Int {
        let before = commands
        var failure: (any Error)?
        parser.feed(bytes) { event in
            guard failure == nil else { return }
            do {
                for c in try decoder.decode(event) {
                    accumulator.add(c.chunk)
                    lastCommand = events.command(.chunk, data: c.json)
                    commands += 1
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        return commands - before
    }

    /// Content chunks the accumulator has seen.
    public var contentChunks: Int { accumulator.contentChunks }
}
