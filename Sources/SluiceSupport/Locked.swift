#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value behind a pthread mutex, with a condition variable that a thread of its own
/// sleeps on until others hand it work (the Redis connection's command thread).
///
/// `Synchronization.Mutex` has no condition variable; for a plain lock, use `Mutex`.
public final class Locked<Value>: @unchecked Sendable {
    // @unchecked: `value` is only read or written while `mutex` is held, and the mutex and
    // condition live at stable heap addresses for the lifetime of the object.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
        #if os(Linux)
        // Time out against the monotonic clock: wall-clock jumps must not stretch a wait.
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        #else
        pthread_cond_init(condition, nil)
        #endif
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Wakes the thread waiting in `wait(until:_:)`, if any.
    public func signal() {
        pthread_cond_signal(condition)
    }

    /// Calls `body` under the lock until it returns a value, sleeping on the condition
    /// between calls. Returns `nil` once `deadline` (if any) has passed and `body` has
    /// still returned `nil`.
    public func wait<Result>(until deadline: ContinuousClock.Instant?, _ body: (inout Value) -> Result?) -> Result? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            if let result = body(&value) {
                return result
            }
            guard let deadline else {
                pthread_cond_wait(condition, mutex)
                continue
            }
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero {
                return nil
            }
            var timeout = timespec(remaining)
            #if os(Linux)
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            timeout.tv_sec += now.tv_sec
            timeout.tv_nsec += now.tv_nsec
            if timeout.tv_nsec >= 1_000_000_000 {
                timeout.tv_sec += 1
                timeout.tv_nsec -= 1_000_000_000
            }
            pthread_cond_timedwait(condition, mutex, &timeout)
            #else
            pthread_cond_timedwait_relative_np(condition, mutex, &timeout)
            #endif
        }
    }
}

extension timespec {
    fileprivate init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: .init(seconds), tv_nsec: .init(attoseconds / 1_000_000_000))
    }
}
