import SluiceCore
import SluiceSupport

/// Bounds the jobs running at once, in two lanes. Interactive work may use every slot;
/// batch work what is left of all but a reserve (a quarter, at least one), so an
/// interactive job always finds a slot soon even when a batch fills the worker. A freed
/// slot goes to a waiting interactive job first. `acquire` waits for a slot; the worker
/// pauses the lane's partitions before waiting, so waiting never holds up the broker.
final class InFlightLimiter: Sendable {
    private let slots: AsyncSemaphore

    init(limit: Int) {
        slots = AsyncSemaphore(permits: limit, limitedPermits: limit > 1 ? max(1, limit - max(1, limit / 4)) : 1)
    }

    /// The slots batch work may hold.
    var batchLimit: Int { slots.limitedPermits }
    var inFlight: Int { slots.inUse }
    var isFull: Bool { isFull(.interactive) }
    var isStopped: Bool { slots.isStopped }

    /// Shutdown: every waiter is let through at once (each then sees the shutdown and
    /// releases its slot), and so is every later `acquire`.
    func stop() { slots.stop() }

    func isFull(_ lane: JobPriority) -> Bool { slots.isFull(Self.share(lane)) }

    /// Waits for a slot; false, holding none, if the waiting task was cancelled.
    @discardableResult
    func acquire(_ lane: JobPriority = .interactive) async -> Bool {
        await slots.acquire(Self.share(lane))
    }

    func release() { slots.release() }

    private static func share(_ lane: JobPriority) -> AsyncSemaphore.Share {
        lane == .interactive ? .full : .limited
    }
}
