import Logging
import Synchronization
import SluiceSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Redis Pub/Sub for a whole process: ONE connection, shared by any number of readers.
///
/// A thread of its own runs an event loop: `poll(2)` on the hiredis socket and on a
/// wake-up pipe, non-blocking reads and writes through hiredis's buffer functions. The
/// hiredis context never leaves that thread; callers only change shared state behind a lock
/// and poke the pipe.
///
/// - `subscribe(to:)` returns once Redis has confirmed the `SUBSCRIBE`, so a caller may
///   subscribe and then start the publisher without missing the first message.
/// - Readers of the same channel share one `SUBSCRIBE`; when the last one leaves, the
///   channel is `UNSUBSCRIBE`d.
/// - A message goes from the thread to each reader's own buffer under that reader's lock
///   only: the thread routes with its own copy of every channel's readers, refreshed when
///   a flag says some changed, and looks at the state shared with callers only when
///   woken, so readers coming and going never contend with the per-message path.
/// - The connection is opened with the first subscription and kept. When it breaks, the
///   thread reconnects with capped exponential backoff (50 ms doubling to 2 s, ±20 %
///   jitter), subscribes again every channel that still has readers, and sends each of
///   their readers `.resubscribed` once Redis has confirmed. The outage is logged once as a
///   warning, the recovery once as info.
/// - A `subscribe` that Redis has not confirmed within `RedisConfiguration.requestTimeout`
///   (5 s; e.g. Redis is down) throws `RedisError.Code.unavailable`.
///
/// Host names are resolved synchronously when connecting (on the subscriber's thread);
/// everything else is non-blocking.
public final class RedisSubscriber: Sendable {
    private let core: SubscriberCore
    private let thread: DedicatedThread

    /// Starts the subscriber's thread. Nothing connects until the first subscription.
    public init(configuration: RedisConfiguration, logger: Logger) {
        var logger = logger
        logger[metadataKey: "redis"] = "\(configuration.host):\(configuration.port)"
        let core = SubscriberCore(configuration: configuration, logger: logger)
        self.core = core
        thread = DedicatedThread(name: "redis-subscribe") { core.run() }
    }

    deinit {
        shutdown()
    }

    /// Subscribes a new reader to `channel` and returns once Redis has confirmed the
    /// subscription; every message published after that is delivered.
    ///
    /// - Throws: `RedisError` (`.unavailable` if Redis does not confirm within the request
    ///   timeout, `.shutDown`), or `CancellationError` if the task is cancelled meanwhile.
    public func subscribe(
        to channel: String,
        bufferingPolicy: RedisSubscription.BufferingPolicy = .unbounded
    ) async throws -> RedisSubscription {
        let sink = SubscriptionSink(
            channel: channel,
            id: core.nextReaderID.wrappingAdd(1, ordering: .relaxed).newValue,
            policy: bufferingPolicy
        ) { [core] sink in
            core.removeReader(sink)
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                core.addReader(sink, confirmation: continuation)
            }
        } onCancel: { [core] in
            core.removeReader(sink, failingWith: CancellationError())
            sink.cancel()  // in case the confirmation won the race: the subscription is dead
        }
        return RedisSubscription(sink: sink)
    }

    /// Whether the connection is up and authenticated.
    public var isConnected: Bool {
        core.state.withLock { $0.isReady }
    }

    /// Ends every subscription (their sequences finish after what they have buffered),
    /// fails pending `subscribe` calls, closes the connection and stops the thread. Blocks
    /// until then (milliseconds). Later calls return at once.
    public func shutdown() {
        core.requestShutdown()
        thread.join()
    }
}

// MARK: - Shared state

private struct SubscriberState {
    struct Channel {
        var readers: [UInt64: SubscriptionSink] = [:]
        /// What the server will believe once it has processed everything sent so far.
        var subscribedOnServer = false
        /// SUBSCRIBE/UNSUBSCRIBE commands for this channel not yet confirmed.
        var unconfirmed = 0
    }

    /// A reader whose `subscribe` call waits for Redis's confirmation.
    struct Waiter {
        let channel: String
        let continuation: CheckedContinuation<Void, any Error>
        let deadline: ContinuousClock.Instant
    }

    var channels: [String: Channel] = [:]
    var waiters: [UInt64: Waiter] = [:]
    /// Channels whose readers changed since the thread last copied them into its routes;
    /// `SubscriberCore.routesChanged` says whether this is empty.
    var rerouted: Set<String> = []
    /// Channels whose readers changed since the thread last looked.
    var dirty: Set<String> = []
    /// Connected and authenticated.
    var isReady = false
    var isShutDown = false
    /// A byte is in the wake-up pipe and the thread has not looked at the state since.
    var wakePending = false

    /// Whether the caller must write to the wake-up pipe.
    mutating func requestWake() -> Bool {
        defer { wakePending = true }
        return !wakePending
    }

    /// Notes that the readers of `channel` changed, for the thread's routes.
    mutating func reroute(_ channel: String, _ flag: borrowing Atomic<Bool>) {
        rerouted.insert(channel)
        flag.store(true, ordering: .sequentiallyConsistent)
    }
}

private final class SubscriberCore: Sendable {
    let configuration: RedisConfiguration
    let logger: Logger
    let state = Mutex(SubscriberState())
    let nextReaderID = Atomic<UInt64>(0)
    /// Set (under the lock) when a channel's readers change, so that the thread, which
    /// routes each message with its own copy of the readers, takes the lock only then.
    let routesChanged = Atomic<Bool>(false)
    /// The wake-up pipe, non-blocking at both ends; closed in `deinit`, when no caller can
    /// write to it any more.
    let wakeReadEnd: Int32
    let wakeWriteEnd: Int32

    init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        var ends: (Int32, Int32) = (-1, -1)
        let rc = withUnsafeMutableBytes(of: &ends) { pipe($0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
        precondition(rc == 0, "cannot create the Redis subscriber's wake-up pipe (errno \(errno))")
        for fd in [ends.0, ends.1] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeReadEnd = ends.0
        wakeWriteEnd = ends.1
    }

    deinit {
        close(wakeReadEnd)
        close(wakeWriteEnd)
    }

    func wakeThread() {
        var byte: UInt8 = 1
        _ = write(wakeWriteEnd, &byte, 1)  // a full pipe already means "wake up"
    }

    func addReader(_ sink: SubscriptionSink, confirmation: CheckedContinuation<Void, any Error>) {
        enum Action { case confirmed, failed(any Error), wait(wake: Bool) }
        let deadline = ContinuousClock.now + configuration.requestTimeout
        let action = state.withLock { state -> Action in
            if state.isShutDown {
                return .failed(RedisError(.shutDown, "the Redis subscriber is shut down"))
            }
            // Checked under the lock: a cancellation handler that ran before this found
            // nothing to remove, so the flag must be seen here.
            if Task.isCancelled {
                return .failed(CancellationError())
            }
            let channel = state.channels[sink.channel, default: .init()]
            let live = state.isReady && channel.subscribedOnServer && channel.unconfirmed == 0
            state.channels[sink.channel, default: .init()].readers[sink.id] = sink
            state.reroute(sink.channel, routesChanged)
            if live {
                return .confirmed
            }
            state.waiters[sink.id] = .init(channel: sink.channel, continuation: confirmation, deadline: deadline)
            state.dirty.insert(sink.channel)
            return .wait(wake: state.requestWake())
        }
        switch action {
        case .confirmed: confirmation.resume()
        case .failed(let error): confirmation.resume(throwing: error)
        case .wait(let wake): if wake { wakeThread() }
        }
    }

    /// Frees a reader's slot; a `subscribe` still waiting for it throws `error`.
    func removeReader(_ sink: SubscriptionSink, failingWith error: any Error = CancellationError()) {
        let (waiter, wake) = state.withLock { state -> (SubscriberState.Waiter?, Bool) in
            guard state.channels[sink.channel]?.readers.removeValue(forKey: sink.id) != nil else {
                return (nil, false)
            }
            state.reroute(sink.channel, routesChanged)
            let waiter = state.waiters.removeValue(forKey: sink.id)
            guard state.channels[sink.channel]?.readers.isEmpty == true else {
                return (waiter, false)
            }
            state.dirty.insert(sink.channel)
            return (waiter, state.requestWake())
        }
        waiter?.continuation.resume(throwing: error)
        if wake { wakeThread() }
    }

    func requestShutdown() {
        let wake = state.withLock { state -> Bool in
            state.isShutDown = true
            return state.requestWake()
        }
        if wake { wakeThread() }
    }

    /// The body of the subscriber's thread.
    func run() {
        var loop = SubscriberLoop(core: self)
        loop.run()
    }
}

// MARK: - The thread

private struct SubscriberLoop: ~Copyable {
    enum Phase {
        /// Not connected, and nobody has asked for a connection yet.
        case idle
        case waitingToRetry(until: ContinuousClock.Instant)
        case connecting(HiredisContext, deadline: ContinuousClock.Instant)
        /// Connected; `[AUTH,] PING` sent, waiting for `replies` more replies. A connection
        /// counts only once Redis has answered: a dying server may still complete a TCP
        /// handshake from its backlog, then reset the connection.
        case handshaking(HiredisContext, deadline: ContinuousClock.Instant, replies: Int)
        case ready(HiredisContext)
    }

    /// What the thread learned from the shared state in one turn.
    struct Sync {
        var commands: [RedisCommand] = []
        var expired: [SubscriberState.Waiter] = []
        var earliestDeadline: ContinuousClock.Instant?
        var wantsConnection = false
    }

    let core: SubscriberCore
    var phase = Phase.idle
    /// Output is waiting in hiredis's buffer for the socket to become writable.
    var needsWrite = false
    /// The next turn must apply the shared state (`synchronize`): set when the wake-up
    /// pipe was read, when `poll` timed out, and when the connection changed phase.
    var mustSynchronize = true
    var backoff = Backoff.reconnect
    var outage: OutageLog
    var lastError = RedisError(.unavailable, "not connected yet")
    /// Scratch list of the readers a message goes to.
    var recipients: [SubscriptionSink] = []
    /// Each channel's readers, as of the last `refreshRoutes`: the thread routes messages
    /// with this copy, so the per-message path takes no lock shared with other readers.
    var routes: [String: [SubscriptionSink]] = [:]
    var pollDescriptors = [pollfd](repeating: pollfd(), count: 2)

    init(core: SubscriberCore) {
        self.core = core
        outage = OutageLog(logger: core.logger, what: "Redis subscriber")
    }

    mutating func run() {
        var sync = Sync()
        while true {
            // A turn that only read messages leaves the shared state as it was: the
            // thread takes the lock callers share only when one of them woke it, a
            // deadline passed, or the connection changed phase.
            if mustSynchronize || sync.earliestDeadline.map({ $0 <= .now }) == true {
                guard let fresh = synchronize() else { break }
                sync = fresh
                mustSynchronize = false
            } else {
                sync.commands.removeAll(keepingCapacity: true)
                sync.expired.removeAll(keepingCapacity: true)
            }
            if !sync.expired.isEmpty {
                let code: RedisError.Code = lastError.code == .authenticationFailed ? .authenticationFailed : .unavailable
                let reason = outage.isDown ? " (\(lastError.message))" : ""
                let error = RedisError(
                    code,
                    "Redis did not confirm the subscription within \(core.configuration.requestTimeout)\(reason)"
                )
                for waiter in sync.expired {
                    waiter.continuation.resume(throwing: error)
                }
            }
            refreshRoutes()
            startConnectingIfDue(wanted: sync.wantsConnection)
            if case .ready(let context) = phase, !sync.commands.isEmpty {
                do {
                    for command in sync.commands {
                        try context.append(command)
                    }
                    needsWrite = try !context.writePending()
                } catch {
                    connectionFailed(error)
                }
            }
            if case .ready = phase {} else {
                mustSynchronize = true
            }
            pollOnce(until: earliest(sync.earliestDeadline, phaseDeadline))
        }
        stop()
    }

    /// Applies callers' changes: fails waiters past their deadline, decides the
    /// SUBSCRIBE/UNSUBSCRIBE commands to send. `nil` once shutdown was requested.
    mutating func synchronize() -> Sync? {
        let now = ContinuousClock.now
        let isReady: Bool
        if case .ready = phase { isReady = true } else { isReady = false }
        return core.state.withLock { state -> Sync? in
            state.wakePending = false
            if state.isShutDown { return nil }
            var sync = Sync()
            if !state.waiters.isEmpty {
                for (id, waiter) in state.waiters {
                    if waiter.deadline <= now {
                        sync.expired.append(waiter)
                        state.channels[waiter.channel]?.readers[id] = nil
                        state.dirty.insert(waiter.channel)
                        state.reroute(waiter.channel, core.routesChanged)
                    } else {
                        sync.earliestDeadline = earliest(sync.earliestDeadline, waiter.deadline)
                    }
                }
                if !sync.expired.isEmpty {
                    state.waiters = state.waiters.filter { $0.value.deadline > now }
                }
            }
            for name in state.dirty {
                guard var channel = state.channels[name] else { continue }
                let wanted = !channel.readers.isEmpty
                if isReady, wanted != channel.subscribedOnServer {
                    sync.commands.append(RedisCommand(wanted ? "SUBSCRIBE" : "UNSUBSCRIBE", name))
                    channel.subscribedOnServer = wanted
                    channel.unconfirmed += 1
                }
                if !wanted, !channel.subscribedOnServer, channel.unconfirmed == 0 {
                    state.channels[name] = nil
                } else {
                    state.channels[name] = channel
                }
            }
            state.dirty.removeAll(keepingCapacity: true)
            sync.wantsConnection = !state.channels.isEmpty
            return sync
        }
    }

    var phaseDeadline: ContinuousClock.Instant? {
        switch phase {
        case .idle, .ready: nil
        case .waitingToRetry(let until): until
        case .connecting(_, let deadline), .handshaking(_, let deadline, _): deadline
        }
    }

    mutating func startConnectingIfDue(wanted: Bool) {
        let now = ContinuousClock.now
        switch phase {
        case .idle:
            guard wanted else { return }
        case .waitingToRetry(let until):
            guard until <= now else { return }
            guard wanted else {
                phase = .idle
                return
            }
        case .connecting(_, let deadline), .handshaking(_, let deadline, _):
            if deadline <= now {
                connectionFailed(RedisError(.unavailable, "timed out connecting to Redis"))
            }
            return
        case .ready:
            return
        }
        do {
            let context = try HiredisContext.connectNonBlocking(
                host: core.configuration.host, port: core.configuration.port
            )
            phase = .connecting(context, deadline: now + core.configuration.connectTimeout)
        } catch {
            connectionFailed(error)
        }
    }

    /// Waits for the socket, the wake-up pipe or `deadline`, and handles what happened.
    mutating func pollOnce(until deadline: ContinuousClock.Instant?) {
        let timeout = deadline.map { ContinuousClock.now.duration(to: $0).pollMilliseconds } ?? -1
        pollDescriptors[0] = pollfd(fd: core.wakeReadEnd, events: Int16(POLLIN), revents: 0)
        var count: nfds_t = 1
        switch phase {
        case .connecting(let context, _):
            pollDescriptors[1] = pollfd(fd: context.fd, events: Int16(POLLOUT), revents: 0)
            count = 2
        case .handshaking(let context, _, _), .ready(let context):
            let events = needsWrite ? POLLIN | POLLOUT : POLLIN
            pollDescriptors[1] = pollfd(fd: context.fd, events: Int16(events), revents: 0)
            count = 2
        case .idle, .waitingToRetry:
            break
        }
        let ready = pollDescriptors.withUnsafeMutableBufferPointer { poll($0.baseAddress, count, timeout) }
        guard ready > 0 else {  // timeout, or EINTR: the next turn re-evaluates
            mustSynchronize = true
            return
        }
        if pollDescriptors[0].revents != 0 {
            mustSynchronize = true
            drainWakePipe()
        }
        if count == 2, pollDescriptors[1].revents != 0 {
            socketReady(events: Int32(pollDescriptors[1].revents))
        }
    }

    func drainWakePipe() {
        withUnsafeTemporaryAllocation(byteCount: 64, alignment: 1) { buffer in
            while read(core.wakeReadEnd, buffer.baseAddress, buffer.count) > 0 {}
        }
    }

    mutating func socketReady(events: Int32) {
        switch phase {
        case .idle, .waitingToRetry:
            return
        case .connecting(let context, _):
            let error = context.socketError
            guard error == 0 else {
                connectionFailed(RedisError(.unavailable, String(cString: strerror(error))))
                return
            }
            context.enableKeepAlive()
            var replies = 1
            do {
                if let password = core.configuration.password {
                    var auth = RedisCommand("AUTH")
                    if let username = core.configuration.username { auth.append(username) }
                    auth.append(password)
                    try context.append(auth)
                    replies += 1
                }
                try context.append(RedisCommand("PING"))
                needsWrite = try !context.writePending()
                phase = .handshaking(context, deadline: .now + core.configuration.connectTimeout, replies: replies)
            } catch {
                connectionFailed(error)
            }
        case .handshaking(let context, _, _), .ready(let context):
            do {
                if events & Int32(POLLOUT) != 0 {
                    needsWrite = try !context.writePending()
                }
                if events & Int32(POLLIN | POLLERR | POLLHUP) != 0 {
                    try context.readAvailable()
                    while let reply = try context.nextBufferedReply() {
                        try handle(reply, on: context)
                    }
                }
            } catch {
                connectionFailed(error)
            }
        }
    }

    mutating func handle(_ reply: consuming HiredisReply, on context: HiredisContext) throws(RedisError) {
        if case .handshaking(_, let deadline, let replies) = phase {
            if let message = reply.errorMessage {
                let isAuthError = core.configuration.password != nil && replies == 2 || message.hasPrefix("NOAUTH")
                throw isAuthError
                    ? RedisError(.authenticationFailed, "Redis refused the password: \(message)")
                    : RedisError(.unavailable, "Redis refused the connection: \(message)")
            }
            if replies > 1 {
                phase = .handshaking(context, deadline: deadline, replies: replies - 1)
            } else {
                becomeReady(context)
            }
            return
        }
        switch reply.pubSub {
        case .message(let channel, let payload):
            deliver(.message(payload), to: channel)
        case .subscribed(let channel), .unsubscribed(let channel):
            confirm(channel)
        case .other:
            if let message = reply.errorMessage {
                core.logger.warning("Redis subscriber got an error reply", metadata: ["error": "\(message)"])
            }
        }
    }

    mutating func becomeReady(_ context: HiredisContext) {
        phase = .ready(context)
        mustSynchronize = true
        backoff.reset()
        outage.connected()
        core.state.withLock { state in
            state.isReady = true
            state.dirty.formUnion(state.channels.keys)
        }
    }

    /// A SUBSCRIBE or UNSUBSCRIBE of `name` was processed. When it was the last one in
    /// flight and the channel is subscribed, waiting readers are released and readers that
    /// were already reading learn that they were resubscribed.
    mutating func confirm(_ name: String) {
        var released: [CheckedContinuation<Void, any Error>] = []
        recipients.removeAll(keepingCapacity: true)
        core.state.withLock { state in
            guard var channel = state.channels[name], channel.unconfirmed > 0 else { return }
            channel.unconfirmed -= 1
            if channel.unconfirmed == 0 {
                if channel.subscribedOnServer {
                    for (id, sink) in channel.readers {
                        if let waiter = state.waiters.removeValue(forKey: id) {
                            released.append(waiter.continuation)
                        } else {
                            recipients.append(sink)
                        }
                    }
                } else if channel.readers.isEmpty {
                    state.channels[name] = nil
                    return
                }
            }
            state.channels[name] = channel
        }
        for continuation in released {
            continuation.resume()
        }
        for sink in recipients {
            sink.deliver(.resubscribed)
        }
        recipients.removeAll(keepingCapacity: true)
    }

    mutating func deliver(_ event: RedisSubscriptionEvent, to name: String) {
        refreshRoutes()
        guard let sinks = routes[name] else { return }
        for sink in sinks {
            sink.deliver(event)
        }
    }

    /// Copies the readers of the channels whose readers changed into `routes`, if any
    /// did. A reader is added (and the flag set) before its `subscribe` returns, so every
    /// message published after that finds it here.
    mutating func refreshRoutes() {
        guard core.routesChanged.load(ordering: .sequentiallyConsistent) else { return }
        let changes = core.state.withLock { state -> [(String, [SubscriptionSink])] in
            core.routesChanged.store(false, ordering: .sequentiallyConsistent)
            defer { state.rerouted.removeAll(keepingCapacity: true) }
            return state.rerouted.map { name in (name, state.channels[name].map { Array($0.readers.values) } ?? []) }
        }
        for (name, sinks) in changes {
            routes[name] = sinks.isEmpty ? nil : sinks
        }
    }

    /// Drops the connection (or the attempt) and schedules the next attempt. Channels keep
    /// their readers and are subscribed again once reconnected.
    mutating func connectionFailed(_ error: RedisError) {
        let wasReady: Bool
        if case .ready = phase { wasReady = true } else { wasReady = false }
        lastError = error
        needsWrite = false
        mustSynchronize = true
        if wasReady {
            outage.lost(error)
            // A server that closed one connection is usually still there: try again at once.
            phase = .waitingToRetry(until: .now)
        } else {
            outage.connectFailed(error)
            phase = .waitingToRetry(until: .now + backoff.nextDelay())
        }
        core.state.withLock { state in
            state.isReady = false
            state.channels = state.channels.compactMapValues { channel in
                channel.readers.isEmpty ? nil : SubscriberState.Channel(readers: channel.readers)
            }
        }
    }

    /// Ends every reader and waiter and closes the connection.
    mutating func stop() {
        let (channels, waiters) = core.state.withLock { state in
            state.isReady = false
            state.isShutDown = true
            defer {
                state.channels = [:]
                state.waiters = [:]
                state.dirty = []
            }
            return (state.channels, state.waiters)
        }
        for waiter in waiters.values {
            waiter.continuation.resume(throwing: RedisError(.shutDown, "the Redis subscriber shut down"))
        }
        for channel in channels.values {
            for (id, sink) in channel.readers where waiters[id] == nil {
                sink.finish(.finished)
            }
        }
        routes = [:]
        phase = .idle
        core.logger.debug("Redis subscriber stopped")
    }
}

private func earliest(_ a: ContinuousClock.Instant?, _ b: ContinuousClock.Instant?) -> ContinuousClock.Instant? {
    switch (a, b) {
    case (nil, let x), (let x, nil): x
    case (let a?, let b?): min(a, b)
    }
}
