import CCurl
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One libcurl multi handle driven by one dedicated thread.
///
/// The thread loops on `curl_multi_poll`, which waits for socket activity, libcurl's own
/// timers, our timeouts, or `curl_multi_wakeup`. Other threads never touch the multi
/// handle or a submitted easy handle: they append commands to a lock-protected inbox and
/// wake the thread. Finished and aborted easy handles are removed from the multi handle,
/// whose connection cache keeps their connections for reuse.
///
/// `@unchecked Sendable`: `multi`, `active` and `timers` are used only by the loop thread
/// (the multi handle is created before the thread starts and freed after it stopped
/// taking commands); the inbox is behind a lock, and `curl_multi_wakeup`, the one libcurl
/// call made from other threads, is thread-safe and only made under the inbox lock while the
/// inbox is open, that is while the multi handle exists.
final class CurlEventLoop: @unchecked Sendable {
    private enum Command {
        case add(CurlTransfer)
        case abort(TransferState)
        case resume(TransferState)
    }

    private struct Inbox {
        var commands: [Command] = []
        var closed = false
    }

    private let multi: UnsafeMutableRawPointer
    private let inbox = Locked(Inbox())
    private let logger: Logger
    private let thread = Locked<pthread_t?>(nil)

    // Loop thread only.
    private var active: [ObjectIdentifier: CurlTransfer] = [:]
    private let timers = TimerSchedule()

    init(logger: Logger) {
        _ = curlGlobalInit
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed (out of memory)") }
        self.multi = multi
        self.logger = logger
        let thread = startThread(name: "sluice-curl") { [self] in self.run() }
        self.thread.withLock { $0 = thread }
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

    @discardableResult
    private func send(_ command: Command) -> Bool {
        self.inbox.withLock { inbox in
            guard !inbox.closed else { return false }
            inbox.commands.append(command)
            // One wakeup per batch: the loop takes the whole inbox at once, and a wakeup
            // sent while it is not polling makes its next poll return at once.
            if inbox.commands.count == 1 { curl_multi_wakeup(self.multi) }
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
                curl_multi_wakeup(self.multi)
            }
            pthread_join(running, nil)
            thread = nil
        }
    }

    // MARK: The loop thread

    private func run() {
        var running: Int32 = 0
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

            let performed = curl_multi_perform(self.multi, &running)
            if performed != CURLM_OK {
                self.logger.error("curl_multi_perform failed", metadata: ["error": "\(String(cString: curl_multi_strerror(performed)))"])
            }
            self.collectFinished()
            let timeout = self.expireTimeouts(now: .now)

            let polled = curl_multi_poll(self.multi, nil, 0, timeout, nil)
            if polled != CURLM_OK {
                self.logger.error("curl_multi_poll failed", metadata: ["error": "\(String(cString: curl_multi_strerror(polled)))"])
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
    /// `curl_multi_poll` may sleep.
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

/// Starts a joinable thread named `name` (15 bytes at most) running `body`, with SIGPIPE
/// blocked: a write to a closed socket inside libcurl or its TLS library then fails with
/// EPIPE instead of killing the process.
private func startThread(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Context: Sendable {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }

        /// The thread's entry point: balances the `passRetained` below.
        static func run(_ raw: UnsafeMutableRawPointer) {
            let context = Unmanaged<Context>.fromOpaque(raw).takeRetainedValue()
            #if os(Linux)
            // Glibc's pthread_setname_np is hidden from Swift; this is what it does.
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

    let context = Unmanaged.passRetained(Context(name: name, body: body)).toOpaque()
    #if canImport(Darwin)
    var thread: pthread_t?
    let created = pthread_create(&thread, nil, { Context.run($0); return nil }, context)
    precondition(created == 0, "pthread_create failed: \(created)")
    return thread!
    #else
    var thread = pthread_t()
    let created = pthread_create(&thread, nil, { Context.run($0!); return nil }, context)
    precondition(created == 0, "pthread_create failed: \(created)")
    return thread
    #endif
}
