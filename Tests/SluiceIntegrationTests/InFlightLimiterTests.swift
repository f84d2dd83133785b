@testable import SluiceWorker
import Testing

/// The worker's slot limiter: a shutdown lets an intake waiting for a slot through at
/// once, so the drain deadline holds however long the running jobs are.
@Suite(.timeLimit(.minutes(1))) struct InFlightLimiterTests {
    @Test func stopLetsAWaitingIntakeThroughAndItSeesTheStop() async throws {
        let limiter = InFlightLimiter(limit: 1)
        await limiter.acquire()
        let waiter = Task {
            await limiter.acquire()
            return limiter.isStopped
        }
        // The waiter cannot get the only slot until it is stopped.
        try await Task.sleep(for: .milliseconds(50))
        limiter.stop()
        #expect(await waiter.value == true)
        // Later acquires do not wait either, and releases balance.
        await limiter.acquire()
        limiter.release()
        limiter.release()
        limiter.release()
        #expect(limiter.inFlight == 0)
    }
}
