import SluiceCore
import SluiceProviders
import SluiceRedis
import SluiceSupport

/// Whether a run publishes its chunk events. Interactive jobs always do; a batch-lane
/// job as `worker.batch_chunk_events` says: always, never, or only while someone follows
/// it, which the gateway tells by keeping `sluice:job:{id}:followed` set while a reader
/// is attached (`FollowMark`).
///
/// The mark is read when an attempt starts and then at most once every
/// `FollowMark.checkEvery` seconds, between reads from the provider: never once per
/// chunk. Once open, the gate stays open for the rest of the run: a relay that shows
/// the chunks never sees them stop before the end (its mark may lapse for a moment), and
/// no more reads are needed. Chunks left unpublished take no `seq`, so a reader who
/// arrives mid-stream sees a gap-free stream. Lifecycle events and the result go out
/// whatever it says.
struct ChunkEventGate {
    private let mode: SluiceConfig.BatchChunkEvents
    private let key: String
    /// Whether chunk events go out now.
    private(set) var isOpen: Bool
    /// When the mark was last read (monotonic seconds).
    private var checkedAt = -Double.infinity

    init(jobID: String, lane: JobPriority, mode: SluiceConfig.BatchChunkEvents) {
        self.mode = lane == .interactive ? .always : mode
        self.key = RedisKeys.followed(jobID)
        self.isOpen = self.mode == .always
    }

    /// Whether `refresh` would read the mark at `now` (monotonic seconds): the gate is
    /// still closed and waits on the mark, and its last read is old enough.
    func isRefreshDue(at now: Double) -> Bool {
        mode == .followed && !isOpen && now - checkedAt >= FollowMark.checkEvery
    }

    /// Reads the follow mark if it is due and the gate still closed. Redis not answering
    /// leaves the gate as it was.
    mutating func refresh(redis: some RedisCommandSink) async {
        guard mode == .followed, !isOpen else { return }
        let now = MonotonicClock.now()
        guard now - checkedAt >= FollowMark.checkEvery else { return }
        checkedAt = now
        guard redis.isConnected, let reply = try? await redis.execute(RedisCommand("EXISTS", key)), let count = reply.int else {
            return
        }
        isOpen = count > 0
    }
}
