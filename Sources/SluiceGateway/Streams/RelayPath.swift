import Hummingbird
import SluiceCore

/// The gateway's per-message work with its I/O cut off: an event envelope in, as the
/// Redis subscriber hands it to a reader, its SSE frame out, appended to the buffer the
/// next body write sends. The same steps as the follower and the two relays (peek the
/// envelope, check the run, write the frame); the allocation test and the
/// micro-benchmarks in `Benchmarks/` measure them. Reading the message off the socket
/// (hiredis) and the subscription's queue are not part of it.
public struct RelayPath {
    public enum Route: Sendable {
        /// `GET /v1/jobs/{id}/events`: `id:`, `event:` and the envelope as `data:`.
        case events
        /// `POST /v1/chat/completions` with `stream: true`: the chunk's `data` alone.
        case chatCompletions
    }

    public let route: Route
    private var runs = RunGuard()
    private var frames: CompletionFrames

    public init(route: Route, jobID: String = "chunk-path-job") {
        self.route = route
        frames = CompletionFrames(style: CompletionStyle(api: "openai", stream: true, includeUsageChunk: true), jobID: jobID)
    }

    /// Appends the frame of `envelope` to `buffer`, as `JobEventStream` and
    /// `CompletionStream` do; false if it is not an envelope or belongs to another run.
    public mutating func relay(_ envelope: [UInt8], into buffer: inout ByteBuffer) -> Bool {
        guard let fields = EventEnvelope.peek(envelope) else { return false }
        let item = JobEventFollower.Item.event(seq: fields.seq, name: fields.event, envelope: envelope, data: fields.data)
        switch route {
        case .events:
            SSEFormat.writeEvent(id: fields.seq, name: fields.event, data: envelope, range: 0..<envelope.count, to: &buffer)
        case .chatCompletions:
            guard runs.admit(envelope, isChunk: fields.event == EventName.chunk.rawValue) else { return false }
            frames.write(item, to: &buffer)
        }
        return true
    }
}
