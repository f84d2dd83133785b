import NIOCore

/// Runs a task's nonisolated code on one NIO event loop (`withTaskExecutorPreference`).
///
/// An event stream's relay runs on the event loop of its client's connection: a message
/// from the Redis subscriber's thread wakes that loop once, and the relay's body write
/// goes straight into the channel there, instead of waking a thread of Swift's pool that
/// then hands the write over to the loop.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) {
        self.loop = loop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
