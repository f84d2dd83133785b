import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An OS thread of its own, for an event loop that blocks (hiredis' `poll(2)`, a
/// condition variable, libcurl's `epoll_wait`) and so must stay off the Swift cooperative
/// pool.
///
/// The thread blocks `SIGPIPE`: hiredis writes with `write(2)` and libcurl's TLS library
/// may too, and a write to a socket the server has closed must fail with `EPIPE` rather
/// than kill the process.
/// A thread-directed signal that is blocked stays pending on that thread and is discarded
/// when the thread exits, so no other thread of the process ever sees it.
public final class DedicatedThread: @unchecked Sendable {
    // @unchecked: `handle` is written once in `init` and afterwards only read by `join`,
    // whose single effective call is guarded by `joined`.
    private var handle: pthread_t
    private let joined = Atomic<Bool>(false)

    /// Starts a thread named `name` (at most 15 bytes are kept) that runs `body`.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(ThreadContext(name: name, body: body)).toOpaque()
        #if os(Linux)
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, { raw in
            ThreadContext.run(raw!)
            return nil
        }, context)
        #else
        var handle: pthread_t?
        let rc = pthread_create(&handle, nil, { raw in
            ThreadContext.run(raw)
            return nil
        }, context)
        #endif
        precondition(rc == 0, "pthread_create failed with \(rc)")
        #if os(Linux)
        self.handle = handle
        #else
        self.handle = handle!
        #endif
    }

    /// Waits for the thread to end. Only the first call waits; later calls return at once.
    public func join() {
        if !joined.exchange(true, ordering: .acquiringAndReleasing) {
            pthread_join(handle, nil)
        }
    }
}

private final class ThreadContext {
    let name: String
    let body: @Sendable () -> Void

    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }

    /// Entry point of the new thread: balances the `passRetained` of `DedicatedThread.init`.
    static func run(_ raw: UnsafeMutableRawPointer) {
        let context = Unmanaged<ThreadContext>.fromOpaque(raw).takeRetainedValue()
        #if os(Linux)
        // Glibc's pthread_setname_np is not visible to Swift; this is what it does.
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        if fd >= 0 {
            _ = Array(context.name.utf8.prefix(15)).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        #else
        _ = pthread_setname_np(context.name)
        #endif
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        context.body()
    }
}
