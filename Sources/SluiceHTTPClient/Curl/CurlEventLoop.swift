import CCurl
import Logging
import SluiceSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One libcurl multi handle driven by one dedicated thread.
///
/// The thread waits in `epoll_wait` on the sockets libcurl asks for (its socket callback),
/// an eventfd for commands, and the earlier of libcurl's own timer and our timeouts; it
/// then hands libcurl only the sockets that are ready (`curl_multi_socket_action`). The
/// cost of a wakeup is the work it brings, not the number of open transfers: with
/// thousands of streams open, `curl_multi_perform` + `curl_multi_poll` walked every one of
/// them on every chunk.
///
/// Other threads never touch the multi handle or a submitted easy handle: they append
/// commands to a lock-protected inbox and wake the thread through the eventfd. Finished
/// and aborted easy handles are removed from the multi handle, whose connection cache
/// keeps their connections for reuse.
///
/// `@unchecked Sendable`: `multi`, `active`, `timers` and `curlTimer` are used only by the
/// loop thread (libcurl calls its callbacks from inside the loop's own libcurl calls); the
/// inbox is behind a lock, and the eventfd write is the one thing other threads do.
final class CurlEventLoop: @unchecked Sendable {
    private enum Command {
        case add(CurlTransfer)
        case abort(TransferState)
        case resume(TransferState)
        case attach(any HTTPBodyConsumer, TransferState)
        case release(TransferState)
    }

    private struct Inbox {
        var commands: [Command] = []
        var closed = false
    }

    private let multi: UnsafeMutableRawPointer
    private let inbox = Mutex(Inbox())
    private let logger: Logger
    private let thread = Mutex<DedicatedThread?>(nil)
    /// Run on the loop thread after each round of libcurl callbacks; each answers how soon
    /// it wants to run again even if no socket is ready (nil: no sooner than it would).
    private let roundHooks = Mutex<[@Sendable () -> Duration?]>([])
    private let epoll: Int32
    /// Written to wake the loop for commands.
    private let wakeup: Int32

    // Loop thread only.
    private var active: [ObjectIdentifier: CurlTransfer] = [:]
    private let timers = TimerSchedule()
    /// When libcurl wants `curl_multi_socket_action(CURL_SOCKET_TIMEOUT)` (its timer callback).
    private var curlTimer: ContinuousClock.Instant?

    init(logger: Logger, maxConnections: Int) {
        _ = curlGlobalInit
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed (out of memory)") }
        self.multi = multi
        self.logger = logger
        self.epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        self.wakeup = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        precondition(self.epoll >= 0 && self.wakeup >= 0, "epoll/eventfd: errno \(errno)")
        precondition(sluice_epoll_set(self.epoll, self.wakeup, EPOLLIN.rawValue) == 0, "epoll_ctl: errno \(errno)")

        // The connection cache's size, connections in use included. libcurl's default
        // scales with the transfers in progress, so after a burst it closes the
        // connections the next burst needs again (a TCP handshake per job against the
        // same provider). Too small is worse: every transfer that ends over the limit
        // makes libcurl walk all open connections for the oldest idle one and close it,
        // and the next job connects anew (with 2,000 jobs in flight against a limit of
        // 1,024, that walk was the biggest per-job cost in the worker's profile).
        _ = sluice_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(1, maxConnections))
        // HTTP/2 streams share a connection (libcurl's default since 7.62; said here since
        // the worker's provider traffic depends on it). No cap per host
        // (CURLMOPT_MAX_HOST_CONNECTIONS stays 0): once a connection has as many streams
        // as the server allows, the next request opens another rather than queueing.
        _ = sluice_curl_multi_setopt_long(multi, CURLMOPT_PIPELINING, Int(CURLPIPE_MULTIPLEX))
        let context = Unmanaged.passUnretained(self).toOpaque()
        _ = sluice_curl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, context)
        _ = sluice_curl_multi_setopt_socketfn(multi) { _, socket, what, context, _ in
            let loop = Unmanaged<CurlEventLoop>.fromOpaque(context!).takeUnretainedValue()
            loop.watch(socket, what)
            return 0
        }
        _ = sluice_curl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, context)
        _ = sluice_curl_multi_setopt_timerfn(multi) { _, milliseconds, context in
            let loop = Unmanaged<CurlEventLoop>.fromOpaque(context!).takeUnretainedValue()
            loop.curlTimer = milliseconds < 0 ? nil : .now + .milliseconds(milliseconds)
            return 0
        }
        let thread = DedicatedThread(name: "sluice-curl") { [self] in self.run() }
        self.thread.withLock { $0 = thread }
    }

    deinit {
        close(self.epoll)
        close(self.wakeup)
    }

    /// libcurl's socket callback: what to wait for on `socket`.
    private func watch(_ socket: curl_socket_t, _ what: Int32) {
        switch what {
        case CURL_POLL_REMOVE:
            _ = sluice_epoll_remove(self.epoll, socket)  // may be closed already: nothing to do
        default:
            var events: UInt32 = 0
            if what & CURL_POLL_IN != 0 { events |= EPOLLIN.rawValue }
            if what & CURL_POLL_OUT != 0 { events |= EPOLLOUT.rawValue }
            if sluice_epoll_set(self.epoll, socket, events) != 0 {
                self.logger.error("epoll_ctl failed", metadata: ["errno": "\(errno)"])
            }
        }
    }

    // MARK: Commands (any thread)

    /// Hands `transfer` to the loop. False once the loop is shut down.
    func submit(_ transfer: CurlTransfer) -> Bool {
        self.send(.add(transfer))
    }

    /// Stops a transfer the reader has cancelled (see `TransferState.cancel`).
    func abort(_ state: TransferState) {
        self.send(.abort(state))
    }

    /// Resumes a transfer paused on a full buffer.
    func resume(_ state: TransferState) {
        self.send(.resume(state))
    }

    /// Has the loop feed `state`'s body to `consumer` from now on. False once the loop is
    /// shut down.
    func attach(_ consumer: any HTTPBodyConsumer, to state: TransferState) -> Bool {
        self.send(.attach(consumer, state))
    }

    /// Resumes a transfer whose consumer asked for a pause.
    func release(_ state: TransferState) {
        self.send(.release(state))
    }

    /// Runs `hook` on the loop thread after every round of libcurl callbacks (body
    /// consumers included), before the transfers that ended in the round are reported.
    func afterEachRound(_ hook: @escaping @Sendable () -> Duration?) {
        self.roundHooks.withLock { $0.append(hook) }
    }

    @discardableResult
    private func send(_ command: Command) -> Bool {
        self.inbox.withLock { inbox in
            guard !inbox.closed else { return false }
            inbox.commands.append(command)
            // One wakeup per batch: the loop takes the whole inbox at once, and a wakeup
            // sent while it is not waiting makes its next wait return at once.
            if inbox.commands.count == 1 { self.wake() }
            return true
        }
    }

    /// Aborts every transfer (they fail with `.shutdown`), stops and joins the thread, and
    /// frees the multi handle. Idempotent; blocks until the thread has exited.
    func shutdown() {
        self.thread.withLock { thread in
            guard let running = thread else { return }
            self.inbox.withLock { inbox in
                inbox.closed = true
                self.wake()
            }
            running.join()
            thread = nil
        }
    }

    // MARK: The loop thread

    private func wake() {
        var one: UInt64 = 1
        _ = write(self.wakeup, &one, 8)
    }

    private func run() {
        var running: Int32 = 0
        let capacity = 512
        let fds = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: capacity)
        defer {
            fds.deallocate()
            events.deallocate()
        }
        while true {
            let (commands, closed) = self.inbox.withLock { inbox in
                defer { inbox.commands.removeAll(keepingCapacity: true) }
                return (inbox.commands, inbox.closed)
            }
            let now = ContinuousClock.now
            for command in commands {
                self.apply(command, now: now, closed: closed)
            }
            if closed { break }

            if let due = self.curlTimer, due <= .now {
                self.curlTimer = nil
                self.act(on: sluice_curl_socket_timeout, 0, &running)
            }
            let again = self.roundEnded()
            self.collectFinished()
            var timeout = self.expireTimeouts(now: .now)
            if let due = self.curlTimer {
                timeout = max(0, min(timeout, Self.milliseconds(from: .now, to: due, max: timeout)))
            }
            if let again {
                // Rounded up: a hook that asks again in 0.4 ms must not spin the loop.
                let ms = again <= .zero ? 0 : Int32(clamping: (again - .nanoseconds(1)).milliseconds + 1)
                timeout = min(timeout, ms)
            }

            let ready = sluice_epoll_wait(self.epoll, fds, events, Int32(capacity), timeout)
            if ready < 0, errno != EINTR {
                self.logger.error("epoll_wait failed", metadata: ["errno": "\(errno)"])
            }
            for i in 0..<Int(max(0, ready)) {
                let fd = fds[i]
                if fd == self.wakeup {
                    var count: UInt64 = 0
                    _ = read(self.wakeup, &count, 8)
                    continue
                }
                let e = events[i]
                var flags: Int32 = 0
                if e & EPOLLIN.rawValue != 0 { flags |= CURL_CSELECT_IN }
                if e & EPOLLOUT.rawValue != 0 { flags |= CURL_CSELECT_OUT }
                if e & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CURL_CSELECT_ERR }
                self.act(on: fd, flags, &running)
            }
            if ready > 0 {
                self.roundEnded()
                self.collectFinished()
            }
        }

        let error = HTTPClientError(.shutdown, "HTTP client shut down")
        for transfer in self.active.values {
            curl_multi_remove_handle(self.multi, transfer.easy)
            transfer.state.finish(error)
        }
        self.active.removeAll()
        curl_multi_cleanup(self.multi)
    }

    /// Runs the round hooks; the soonest time any of them wants to run again.
    @discardableResult
    private func roundEnded() -> Duration? {
        self.roundHooks.withLock { hooks in
            var soonest: Duration?
            for hook in hooks {
                if let again = hook() { soonest = min(soonest ?? again, again) }
            }
            return soonest
        }
    }

    private func act(on socket: curl_socket_t, _ flags: Int32, _ running: inout Int32) {
        let code = curl_multi_socket_action(self.multi, socket, flags, &running)
        if code != CURLM_OK {
            self.logger.error("curl_multi_socket_action failed", metadata: ["error": "\(String(cString: curl_multi_strerror(code)))"])
        }
    }

    private func apply(_ command: Command, now: ContinuousClock.Instant, closed: Bool) {
        switch command {
        case .add(let transfer):
            // Cancelled between submission and now, or arriving during shutdown.
            if closed { transfer.state.finish(HTTPClientError(.shutdown, "HTTP client shut down")) }
            guard !transfer.state.isFinished else { return }
            let added = curl_multi_add_handle(self.multi, transfer.easy)
            guard added == CURLM_OK else {
                let message = String(cString: curl_multi_strerror(added))
                transfer.state.finish(HTTPClientError(.transfer, "\(transfer.host): \(message)"))
                return
            }
            self.active[ObjectIdentifier(transfer.state)] = transfer
            transfer.start(at: now, timers: self.timers)
            self.logger.trace("HTTP transfer started", metadata: ["host": "\(transfer.host)"])

        case .abort(let state):
            guard let transfer = self.active.removeValue(forKey: ObjectIdentifier(state)) else { return }
            // Closes the connection (HTTP/1.1) or resets the stream (HTTP/2): the server
            // sees the client go away.
            curl_multi_remove_handle(self.multi, transfer.easy)
            self.logger.trace("HTTP transfer cancelled", metadata: ["host": "\(transfer.host)"])

        case .resume(let state):
            self.active[ObjectIdentifier(state)]?.resume(at: now)

        case .attach(let consumer, let state):
            // The transfer may have ended already: its buffered chunks are consumed all the same.
            if state.attach(consumer) { self.active[ObjectIdentifier(state)]?.resume(at: now) }

        case .release(let state):
            if state.release() { self.active[ObjectIdentifier(state)]?.resume(at: now) }
        }
    }

    private func collectFinished() {
        var queued: Int32 = 0
        while let message = curl_multi_info_read(self.multi, &queued) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            // Read everything from the message before removing the handle invalidates it.
            let code = message.pointee.data.result
            var context: UnsafeMutableRawPointer?
            _ = sluice_curl_getinfo_ptr(easy, CURLINFO_PRIVATE, &context)
            curl_multi_remove_handle(self.multi, easy)
            guard let context else { continue }
            // A strong local reference: the table may have held the last one.
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
            self.active.removeValue(forKey: ObjectIdentifier(transfer.state))
            transfer.complete(code)
            if self.logger.logLevel <= .debug {
                let elapsed = transfer.startedAt.map { ContinuousClock.now - $0 }
                self.logger.debug("HTTP transfer finished", metadata: [
                    "host": "\(transfer.host)",
                    "curl_code": "\(code.rawValue)",
                    "bytes": "\(transfer.receivedBytes)",
                    "elapsed": "\(elapsed.map { "\($0)" } ?? "?")",
                ])
            }
        }
    }

    /// Fails the transfers whose idle or total deadline has passed and returns how long
    /// the loop may sleep.
    ///
    /// A transfer's deadline only moves later while bytes flow, and every new or earlier
    /// one is reported to `timers`, so `timers.earliest` is a lower bound of all of them:
    /// the table is scanned only once that bound has passed, not on every wakeup.
    private func expireTimeouts(now: ContinuousClock.Instant) -> Int32 {
        let maxSleep: Int32 = 1000
        guard let earliest = self.timers.earliest else { return maxSleep }
        if earliest > now { return Self.milliseconds(from: now, to: earliest, max: maxSleep) }

        var expired: [CurlTransfer] = []
        var next: ContinuousClock.Instant?
        for transfer in self.active.values {
            guard let deadline = transfer.deadline else { continue }
            if deadline <= now {
                expired.append(transfer)
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        self.timers.reset(to: next)
        for transfer in expired {
            self.active.removeValue(forKey: ObjectIdentifier(transfer.state))
            curl_multi_remove_handle(self.multi, transfer.easy)
            let error = transfer.timeoutError(now: now)
            self.logger.debug("HTTP transfer timed out", metadata: ["host": "\(transfer.host)", "error": "\(error)"])
            transfer.state.finish(error)
        }
        return next.map { Self.milliseconds(from: now, to: $0, max: maxSleep) } ?? maxSleep
    }

    private static func milliseconds(from now: ContinuousClock.Instant, to deadline: ContinuousClock.Instant, max: Int32) -> Int32 {
        Int32(clamping: Swift.min((deadline - now).milliseconds, Int(max)))
    }
}

/// `curl_global_init` must run once before any other libcurl call; a global's lazy
/// initializer runs exactly once, thread-safely.
private let curlGlobalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_SSL | CURL_GLOBAL_WIN32))  // CURL_GLOBAL_DEFAULT
