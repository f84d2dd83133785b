import Synchronization
import Testing
@testable import SluiceWorker

/// The worker's jobs are unstructured tasks it must still be able to stop together: a
/// job missed by `cancelAll` would hold shutdown until it finished on its own.
struct RunningJobsTests {
    @Test(.timeLimit(.minutes(1))) func cancelAllReachesRunningAndLaterJobs() async {
        let jobs = RunningJobs()
        let limiter = InFlightLimiter(limit: 100)
        let cancelled = Mutex(0)
        func start() async {
            await limiter.acquire()
            jobs.start {
                defer { limiter.release() }
                // Sleeps for an hour unless cancelled.
                if (try? await Task.sleep(for: .seconds(3600))) == nil { cancelled.withLock { $0 += 1 } }
            }
        }
        // Jobs that end at once leave nothing behind to cancel.
        for _ in 0..<50 {
            await limiter.acquire()
            jobs.start { limiter.release() }
        }
        for _ in 0..<20 { await start() }
        jobs.cancelAll()
        await start()  // after cancelAll: cancelled as it starts
        await limiter.waitUntilEmpty()
        #expect(cancelled.withLock { $0 } == 21)
        #expect(limiter.inFlight == 0)
    }
}
