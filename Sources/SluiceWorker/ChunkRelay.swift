import SluiceProviders
import SluiceRedis
import Tracing

/// One attempt's chunk events: each chunk the provider streams becomes a `chunk` event,
/// queued for Redis right where its bytes arrived (the curl thread), with no task woken
/// per chunk. Holds the run's events (for their `seq`) and its chunk gate while the
/// attempt streams; the runner takes them back when it ends.
///
/// It holds the stream back (`receive` answers false, `whileHeld` runs on the attempt's
/// task) when Redis cannot keep up, and when the gate's follow mark is due to be read.
///
/// `@unchecked Sendable`: `receive` runs on the transport's thread while the attempt
/// streams, one call at a time; `whileHeld` runs on the attempt's task only while the
/// transport delivers nothing (the transport's lock and command queue order the two);
/// the runner reads it back after `ProviderRunner.run` returned.
final class ChunkRelay<Redis: RedisCommandSink>: ChunkSink, @unchecked Sendable {
    private(set) var events: JobEvents<Redis>
    private(set) var gate: ChunkEventGate
    /// Content chunks relayed: once any was, the attempt is not retried.
    private(set) var published = 0
    private let span: (any Span)?
    private let wakesPerRound: Bool
    /// Redis answered that it cannot keep up: wait for room before the next chunk.
    private var redisFull = false

    /// - Parameter wakesPerRound: something wakes Redis's thread once per round of the
    ///   transport's thread, so chunk events are queued without waking it.
    init(events: JobEvents<Redis>, gate: ChunkEventGate, span: (any Span)?, wakesPerRound: Bool) {
        self.events = events
        self.gate = gate
        self.span = span
        self.wakesPerRound = wakesPerRound
    }

    func receive(_ chunk: ProviderChunk, at now: Double) -> Bool {
        if gate.isOpen {
            let command = events.command(.chunk, data: chunk.json)
            let room = wakesPerRound ? events.redis.sendWithoutWaking(command) : events.redis.send(command)
            if !room { redisFull = true }
        }
        // Only content counts: a retry after a role-only chunk repeats nothing a reader
        // would notice.
        if chunk.chunk.carriesContent {
            // The first token is an event of the attempt's span; chunks make none.
            if published == 0 { span?.addEvent("first token") }
            published += 1
        }
        return !redisFull && !gate.isRefreshDue(at: now)
    }

    func whileHeld() async {
        let redis = events.redis
        var gate = self.gate
        await gate.refresh(redis: redis)
        self.gate = gate
        if redisFull {
            redisFull = false
            await redis.waitForRoom()
        }
    }
}
