import Logging
import SluiceSupport

/// A pipelining connection for commands: one hiredis context, driven by one thread of its
/// own, shared by every task of the process.
///
/// Callers only touch a queue behind a lock. The thread takes everything queued at once,
/// formats it all into one output buffer and reads the replies in order, so under load many
/// commands leave in a single write; an idle connection answers a lone command in one
/// round trip.
///
/// **Ordering.** `send` and `execute` share the queue: commands reach Redis in the order
/// the calls were made.
///
/// **Reconnection.** The connection is opened with the first command, then kept: when
/// Redis goes away (or is not up yet) the thread retries with capped exponential backoff
/// (50 ms doubling to 2 s, ±20 % jitter), authenticating and selecting the database again.
/// An idle connection is probed once a second, so `isConnected` and the reconnect do not
/// wait for traffic. The outage is logged once as a warning and the recovery once as info.
///
/// **While Redis is connected** nothing is dropped: when more than
/// `RedisConfiguration.maxBufferedCommands` (100 000) fire-and-forget commands are queued,
/// `send` answers false and a producer that can wait awaits `waitForRoom()`.
///
/// **While Redis is unreachable:**
/// - fire-and-forget commands (`send`) are buffered, at most
///   `RedisConfiguration.maxBufferedCommands` of them. Beyond that the oldest sixteenth of
///   the buffer is dropped at once (amortised O(1) per `send`), pinned commands
///   (`RedisCommand.isPinned`) excepted; drops are counted in `droppedCommandCount` and
///   logged once per outage;
/// - `execute` waits for a connection for at most `RedisConfiguration.requestTimeout`
///   (5 s) from the call, then throws `RedisError.Code.unavailable`; its commands have
///   not been sent.
///
/// **Delivery.** A fire-and-forget command whose reply had not arrived when the connection
/// broke is sent again after reconnecting, ahead of later commands: nothing is lost to a
/// Redis restart, but a command that ran just before the connection died may run twice
/// (at least once). An `execute` whose commands were already written when the connection
/// broke throws `RedisError.Code.connectionLost` instead, since only the caller knows
/// whether retrying is safe.
///
/// **Scripts.** A command built with `RedisCommand(script:keys:arguments:)` goes as
/// `EVALSHA`. Before writing a batch, the thread loads the scripts of the commands queued
/// so far that its connection has not loaded (`SCRIPT LOAD`, one extra round trip when
/// a new script appears, and once per connection: a reconnect, to a restarted Redis with
/// no scripts, loads them all again). A `NOSCRIPT` answer (the script
/// cache was flushed under a live connection) is answered by running that command
/// again as `EVAL` with the script's text, once the replies already in flight are read:
/// that command then runs after the commands pipelined behind it, the one exception to
/// the ordering above.
///
/// Blocking commands (`BLPOP`, `SUBSCRIBE`, …) do not belong here: they would stall every
/// other caller. Use `RedisSubscriber` for Pub/Sub.
public final class RedisConnection: Sendable {
    private let core: ConnectionCore
    private let thread: DedicatedThread

    /// Starts the connection's thread. Nothing connects until the first command.
    public init(configuration: RedisConfiguration, logger: Logger) {
        var logger = logger
        logger[metadataKey: "redis"] = "\(configuration.host):\(configuration.port)"
        let core = ConnectionCore(configuration: configuration, logger: logger)
        self.core = core
        thread = DedicatedThread(name: "redis-commands") { core.run() }
    }

    deinit {
        shutdown()
    }

    /// Queues `command` and returns at once; its reply is read and discarded (an error
    /// reply is logged, rate-limited). No suspension, no allocation beyond the queue's.
    /// An empty command is ignored; after `shutdown()` commands are dropped (and counted).
    ///
    /// Answers false when more commands are queued than the buffer holds while Redis is
    /// connected (it cannot keep up): nothing was dropped, and the caller should await
    /// `waitForRoom()` before sending more.
    @discardableResult
    public func send(_ command: RedisCommand) -> Bool {
        core.enqueue(command)
    }

    /// Queues `command` like `send(_:)` without waking the connection's thread if it
    /// sleeps: `wakeIfIdle()`, or the next `send`, does. A burst of commands from one
    /// producer (the chunk events of one round of the HTTP client's thread) then costs
    /// one wake-up.
    @discardableResult
    public func sendWithoutWaking(_ command: RedisCommand) -> Bool {
        core.enqueue(command, wake: false)
    }

    /// Wakes the connection's thread if it sleeps with commands queued by
    /// `sendWithoutWaking(_:)`, but at most once every `interval`: when the last wake is
    /// more recent, the commands wait for the next and the answer says how long that is.
    /// So a steady trickle of commands (paced streams: a chunk here, a chunk there) costs
    /// one wake, one write and one read of replies per interval rather than per command,
    /// while a lone command after a quiet spell goes at once.
    @discardableResult
    public func wakeIfIdle(atMostEvery interval: Duration = .zero) -> Duration? {
        core.wakeIfIdle(atMostEvery: interval)
    }

    /// Queues `commands`, in order, and returns at once. See `send(_:)`.
    @discardableResult
    public func send(_ commands: [RedisCommand]) -> Bool {
        core.enqueue(commands)
    }

    /// Returns once the queue is back under its limit, or Redis is not connected (then
    /// the buffer's drop rule applies), or the task is cancelled.
    public func waitForRoom() async {
        while !Task.isCancelled {
            let full = core.state.withLock { $0.isConnected && $0.isRunning && $0.queuedCommands > $0.maxBufferedCommands }
            if !full { return }
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Runs `command` and returns its reply; a Redis error reply is returned as `.error`.
    ///
    /// Not cancellable once called: it completes within the request timeout while Redis is
    /// unreachable, or within the socket timeout once the command is sent.
    ///
    /// - Throws: `RedisError` when Redis stays unreachable for the request timeout
    ///   (`.unavailable`), the connection breaks before the reply (`.connectionLost`), or
    ///   the connection is shut down (`.shutDown`).
    public func execute(_ command: RedisCommand) async throws -> RedisReply {
        try await execute([command])[0]
    }

    /// Runs `commands` back to back (pipelined, not atomic: wrap them in MULTI/EXEC for
    /// that) and returns their replies in order. Throws like `execute(_:)`.
    public func execute(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        if commands.isEmpty {
            return []
        }
        if commands.contains(where: \.isEmpty) {
            throw RedisError(.invalidCommand, "a Redis command needs at least a name")
        }
        return try await withCheckedThrowingContinuation { continuation in
            core.enqueue(Request(
                commands: commands,
                continuation: continuation,
                deadline: .now + core.configuration.requestTimeout
            ))
        }
    }

    /// Whether the thread currently holds a working connection.
    public var isConnected: Bool {
        core.state.withLock { $0.isConnected }
    }

    /// How many fire-and-forget commands were dropped because the buffer was full (or the
    /// connection shut down before they could be sent).
    public var droppedCommandCount: Int {
        core.state.withLock { $0.droppedCommands }
    }

    /// Stops accepting commands, sends what is queued (for at most `flushTimeout`, plus one
    /// socket timeout if Redis hangs), fails what could not be sent, stops the thread and
    /// closes the connection. Blocks the caller until then. Later calls return at once.
    public func shutdown(flushTimeout: Duration = .seconds(2)) {
        core.requestShutdown(flushTimeout: flushTimeout)
        thread.join()
    }
}

// MARK: - Shared state

private final class Request: Sendable {
    let commands: [RedisCommand]
    let continuation: CheckedContinuation<[RedisReply], any Error>
    /// When to give up if Redis is unreachable.
    let deadline: ContinuousClock.Instant

    init(commands: [RedisCommand], continuation: CheckedContinuation<[RedisReply], any Error>, deadline: ContinuousClock.Instant) {
        self.commands = commands
        self.continuation = continuation
        self.deadline = deadline
    }
}

private enum Work: Sendable {
    case command(RedisCommand)
    case request(Request)
}

private struct ConnectionState {
    enum Lifecycle {
        case running
        case draining(deadline: ContinuousClock.Instant)
        case stopped
    }

    let maxBufferedCommands: Int
    var queue: [Work] = []
    var queuedCommands = 0
    var queuedRequests = 0
    /// The thread sleeps waiting for work and must be signalled.
    var threadIsIdle = false
    /// When `wakeIfIdle(atMostEvery:)` last woke the thread.
    var lastDeferredWake: ContinuousClock.Instant?
    var isConnected = false
    var droppedCommands = 0
    /// Every script a command was queued with, by SHA1: the thread loads those its
    /// connection has not loaded before it writes a batch.
    var scripts: [String: RedisScript] = [:]
    var lifecycle = Lifecycle.running

    var isRunning: Bool {
        if case .running = lifecycle { true } else { false }
    }

    /// Queues a command; answers whether there is room for more (see `RedisConnection.send`).
    mutating func append(_ command: RedisCommand) -> Bool {
        if let script = command.script { note(script) }
        queue.append(.command(command))
        queuedCommands += 1
        guard queuedCommands > maxBufferedCommands else { return true }
        // Connected: Redis is slow, not gone. Keep everything; the sender waits.
        if isConnected { return false }
        dropOldestCommands(max(1, maxBufferedCommands / 16))
        return true
    }

    mutating func note(_ script: RedisScript) {
        if scripts[script.sha1] == nil { scripts[script.sha1] = script }
    }

    /// Drops the `count` oldest fire-and-forget commands that are not pinned; requests stay.
    mutating func dropOldestCommands(_ count: Int) {
        var remaining = count
        queue.removeAll { work in
            guard remaining > 0, case .command(let command) = work, !command.isPinned else { return false }
            remaining -= 1
            return true
        }
        queuedCommands -= count - remaining
        droppedCommands += count - remaining
    }

    /// Puts work that was taken but not answered back at the head of the queue.
    mutating func requeue(_ work: [Work]) {
        guard !work.isEmpty else { return }
        queue.insert(contentsOf: work, at: 0)
        queuedCommands = 0
        queuedRequests = 0
        for item in queue {
            if case .command = item { queuedCommands += 1 } else { queuedRequests += 1 }
        }
        if queuedCommands > maxBufferedCommands && !isConnected {
            dropOldestCommands(queuedCommands - maxBufferedCommands)
        }
    }

    /// Removes and returns the requests whose deadline has passed.
    mutating func takeExpiredRequests(now: ContinuousClock.Instant) -> [Request] {
        guard queuedRequests > 0 else { return [] }
        var expired: [Request] = []
        queue.removeAll { work in
            guard case .request(let request) = work, request.deadline <= now else { return false }
            expired.append(request)
            return true
        }
        queuedRequests -= expired.count
        return expired
    }

    /// The deadline of the oldest queued request (requests are queued in deadline order).
    var earliestRequestDeadline: ContinuousClock.Instant? {
        guard queuedRequests > 0 else { return nil }
        for case .request(let request) in queue {
            return request.deadline
        }
        return nil
    }
}

private final class ConnectionCore: Sendable {
    let configuration: RedisConfiguration
    let logger: Logger
    let state: Locked<ConnectionState>

    init(configuration: RedisConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        state = Locked(ConnectionState(maxBufferedCommands: max(1, configuration.maxBufferedCommands)))
    }

    func enqueue(_ command: RedisCommand, wake: Bool = true) -> Bool {
        guard !command.isEmpty else { return true }
        let (room, signal) = state.withLock { state -> (Bool, Bool) in
            guard state.isRunning else {
                state.droppedCommands += 1
                return (true, false)
            }
            let room = state.append(command)
            return (room, wake && state.takeIdleThread())
        }
        if signal { state.signal() }
        return room
    }

    func wakeIfIdle(atMostEvery interval: Duration) -> Duration? {
        let (signal, wait) = state.withLock { state -> (Bool, Duration?) in
            guard !state.queue.isEmpty, state.threadIsIdle else { return (false, nil) }
            let now = ContinuousClock.now
            if let last = state.lastDeferredWake, now - last < interval {
                return (false, interval - (now - last))
            }
            state.lastDeferredWake = now
            return (state.takeIdleThread(), nil)
        }
        if signal { state.signal() }
        return wait
    }

    func enqueue(_ commands: [RedisCommand]) -> Bool {
        let (room, wake) = state.withLock { state -> (Bool, Bool) in
            guard state.isRunning else {
                state.droppedCommands += commands.count
                return (true, false)
            }
            var room = true
            for command in commands where !command.isEmpty {
                room = state.append(command) && room
            }
            return (room, state.takeIdleThread())
        }
        if wake { state.signal() }
        return room
    }

    func enqueue(_ request: Request) {
        let (accepted, wake) = state.withLock { state -> (Bool, Bool) in
            guard state.isRunning else { return (false, false) }
            for command in request.commands {
                if let script = command.script { state.note(script) }
            }
            state.queue.append(.request(request))
            state.queuedRequests += 1
            return (true, state.takeIdleThread())
        }
        if !accepted {
            request.continuation.resume(throwing: RedisError(.shutDown, "the Redis connection is shut down"))
        } else if wake {
            state.signal()
        }
    }

    func requestShutdown(flushTimeout: Duration) {
        state.withLock { state in
            if state.isRunning {
                state.lifecycle = .draining(deadline: .now + flushTimeout)
            }
        }
        state.signal()
    }

    /// The body of the connection's thread.
    func run() {
        var loop = CommandLoop(core: self)
        loop.run()
    }
}

extension ConnectionState {
    /// Whether the caller must signal the thread (at most one caller per sleep does).
    fileprivate mutating func takeIdleThread() -> Bool {
        defer { threadIsIdle = false }
        return threadIsIdle
    }
}

// MARK: - The thread

/// What the connection's thread owns: the hiredis context and its scratch state. Lives on
/// that thread only.
private struct CommandLoop: ~Copyable {
    /// Commands per write/read cycle when a lot is queued: large enough to amortise the
    /// round trip, small enough to bound the output buffer.
    static let maxPipeline = 4096
    static let idleProbeInterval: Duration = .seconds(1)
    static let dropReportInterval: Duration = .seconds(10)

    let core: ConnectionCore
    var connection: HiredisContext?
    /// The work taken from the queue; swapped with the (empty) queue so that neither
    /// buffer is reallocated in steady state.
    var batch: [Work] = []
    var backoff = Backoff.reconnect
    var nextAttempt = ContinuousClock.now
    var lastConnectError = RedisError(.unavailable, "not connected yet")
    var outage: OutageLog
    var reportedDrops = 0
    var lastDropReport: ContinuousClock.Instant?
    var failedCommands = 0
    var lastFailureReport: ContinuousClock.Instant?
    /// The SHA1s of the scripts loaded on this connection (emptied on a new one).
    var loadedScripts: Set<String> = []
    /// Fire-and-forget script commands Redis answered `NOSCRIPT`, to run again as `EVAL`.
    var scriptRetries: [RedisCommand] = []
    /// Requests one of whose script commands Redis answered `NOSCRIPT`: answered once
    /// those ran again as `EVAL`.
    var scriptRetryRequests: [(request: Request, replies: [RedisReply])] = []

    init(core: ConnectionCore) {
        self.core = core
        outage = OutageLog(logger: core.logger, what: "Redis command connection")
    }

    mutating func run() {
        // Connect lazily: sleep until the first command (or shutdown).
        let hasWork = core.state.wait(until: nil) { state -> Bool? in
            state.threadIsIdle = false
            if !state.queue.isEmpty { return true }
            if !state.isRunning { return false }
            state.threadIsIdle = true
            return nil
        }
        if hasWork == true {
            while step() {}
        }
        stop()
    }

    /// One turn of the loop; `false` when the thread should stop.
    mutating func step() -> Bool {
        reportDrops()
        guard let connection else {
            return reconnectOrWait()
        }
        enum Next { case work, probe, stop }
        let next = core.state.wait(until: .now + Self.idleProbeInterval) { state -> Next? in
            state.threadIsIdle = false
            if case .draining(let deadline) = state.lifecycle, deadline <= .now {
                return .stop
            }
            if !state.queue.isEmpty {
                swap(&state.queue, &batch)
                state.queuedCommands = 0
                state.queuedRequests = 0
                return .work
            }
            if !state.isRunning { return .stop }
            state.threadIsIdle = true
            return nil
        } ?? .probe
        switch next {
        case .stop:
            return false
        case .probe:
            if connection.isClosedWhileIdle {
                connectionLost(RedisError(.connectionLost, "Redis closed the connection"), answered: 0, written: 0)
            }
        case .work:
            process(on: connection)
        }
        return true
    }

    /// Writes the batch and reads its replies, `maxPipeline` commands at a time.
    mutating func process(on connection: HiredisContext) {
        var written = 0
        var answered = 0
        do {
            try loadScripts(on: connection)
            while answered < batch.count {
                var pipelined = 0
                while written < batch.count, pipelined < Self.maxPipeline {
                    // Counted as written before the append: if it fails, it is in flight.
                    written += 1
                    switch batch[written - 1] {
                    case .command(let command):
                        try connection.append(command)
                        pipelined += command.replyCount
                    case .request(let request):
                        for command in request.commands {
                            try connection.append(command)
                        }
                        pipelined += request.commands.count
                    }
                }
                while answered < written {
                    switch batch[answered] {
                    case .command(let command):
                        for _ in 0..<command.replyCount {
                            let reply = try connection.readReply()
                            if let message = reply.errorMessage {
                                if let script = command.script, message.hasPrefix("NOSCRIPT") {
                                    loadedScripts.remove(script.sha1)
                                    scriptRetries.append(command)
                                } else {
                                    reportFailedCommand(command, message)
                                }
                            }
                        }
                    case .request(let request):
                        var replies: [RedisReply] = []
                        replies.reserveCapacity(request.commands.count)
                        var unknownScript = false
                        for command in request.commands {
                            let reply = try connection.readReply()
                            if let script = command.script, reply.errorMessage?.hasPrefix("NOSCRIPT") == true {
                                loadedScripts.remove(script.sha1)
                                unknownScript = true
                            }
                            replies.append(reply.value)
                        }
                        if unknownScript {
                            scriptRetryRequests.append((request, replies))
                        } else {
                            request.continuation.resume(returning: replies)
                        }
                    }
                    answered += 1
                }
                if !scriptRetries.isEmpty || !scriptRetryRequests.isEmpty {
                    try retryWithScriptText(on: connection)
                }
            }
        } catch {
            connectionLost(error, answered: answered, written: written)
            return
        }
        batch.removeAll(keepingCapacity: true)
    }

    /// Loads the scripts queued commands use that this connection has not loaded yet,
    /// in one round trip, before the batch is written. A script Redis refuses to load is
    /// left to the `NOSCRIPT` fallback (and its refusal logged).
    mutating func loadScripts(on connection: HiredisContext) throws(RedisError) {
        let loaded = loadedScripts
        let missing = core.state.withLock { state -> [RedisScript] in
            state.scripts.count == loaded.count ? [] : state.scripts.values.filter { !loaded.contains($0.sha1) }
        }
        guard !missing.isEmpty else { return }
        for script in missing {
            try connection.append(RedisCommand("SCRIPT", "LOAD", script.source))
        }
        for script in missing {
            let reply = try connection.readReply()
            if let message = reply.errorMessage {
                reportFailedCommand(RedisCommand("SCRIPT", "LOAD"), message)
            }
            // Refused or not, it is not asked again on this connection: a refused one's
            // commands get NOSCRIPT and go as EVAL.
            loadedScripts.insert(script.sha1)
        }
    }

    /// Runs the commands that met `NOSCRIPT` again as `EVAL` with the script's text (which
    /// also caches the script), one at a time, now that no other reply is in flight; then
    /// answers the requests that held them.
    mutating func retryWithScriptText(on connection: HiredisContext) throws(RedisError) {
        while let command = scriptRetries.first {
            if let eval = command.withScriptText {
                let reply = try connection.command(eval)
                if let message = reply.errorMessage { reportFailedCommand(command, message) }
            }
            scriptRetries.removeFirst()
        }
        while let (request, answered) = scriptRetryRequests.first {
            var replies = answered
            for (index, command) in request.commands.enumerated() {
                guard let eval = command.withScriptText, replies[index].errorMessage?.hasPrefix("NOSCRIPT") == true else { continue }
                replies[index] = try connection.command(eval).value
            }
            scriptRetryRequests.removeFirst()
            request.continuation.resume(returning: replies)
        }
    }

    /// Drops the connection. Of the batch, written but unanswered commands go back to the
    /// queue (at least once), written requests fail, unwritten work goes back as it was;
    /// so do script commands waiting to run again as `EVAL`, and the requests holding
    /// them.
    mutating func connectionLost(_ error: RedisError, answered: Int, written: Int) {
        var requeue: [Work] = scriptRetries.map { .command($0) }
        scriptRetries.removeAll()
        for (request, _) in scriptRetryRequests {
            request.continuation.resume(throwing: RedisError(
                .connectionLost,
                "the connection to Redis broke before the reply (\(error.message)); the command may or may not have run"
            ))
        }
        scriptRetryRequests.removeAll()
        for work in batch[answered..<written] {
            switch work {
            case .command:
                requeue.append(work)
            case .request(let request):
                request.continuation.resume(throwing: RedisError(
                    .connectionLost,
                    "the connection to Redis broke before the reply (\(error.message)); the command may or may not have run"
                ))
            }
        }
        requeue.append(contentsOf: batch[written...])
        batch.removeAll(keepingCapacity: true)
        core.state.withLock { state in
            state.requeue(requeue)
            state.isConnected = false
        }
        connection = nil
        lastConnectError = error
        outage.lost(error)
        // A server that closed one connection is usually still there: try again at once.
        nextAttempt = .now
    }

    /// While disconnected: fails requests that waited too long, then either waits for the
    /// next attempt or makes it. `false` when the thread should stop.
    mutating func reconnectOrWait() -> Bool {
        let now = ContinuousClock.now
        enum Decision { case stop, attempt, wait(until: ContinuousClock.Instant, running: Bool) }
        let nextAttempt = self.nextAttempt
        let (expired, decision) = core.state.withLock { state -> ([Request], Decision) in
            let expired = state.takeExpiredRequests(now: now)
            var wakeUp = nextAttempt
            if case .draining(let deadline) = state.lifecycle {
                if state.queue.isEmpty || deadline <= now { return (expired, .stop) }
                wakeUp = min(wakeUp, deadline)
            }
            if nextAttempt <= now { return (expired, .attempt) }
            if let deadline = state.earliestRequestDeadline {
                wakeUp = min(wakeUp, deadline)
            }
            return (expired, .wait(until: wakeUp, running: state.isRunning))
        }
        if !expired.isEmpty {
            // A refused password is worth its own code: retrying will not help.
            let code: RedisError.Code = lastConnectError.code == .authenticationFailed ? .authenticationFailed : .unavailable
            let error = RedisError(
                code,
                "Redis at \(core.configuration.host):\(core.configuration.port) is unreachable (\(lastConnectError.message))"
            )
            for request in expired {
                request.continuation.resume(throwing: error)
            }
        }
        switch decision {
        case .stop:
            return false
        case .wait(let wakeUp, let wasRunning):
            // Sleep until then, or until shutdown is requested.
            let shutdownRequested = core.state.wait(until: wakeUp) { state -> Bool? in
                wasRunning && !state.isRunning ? true : nil
            }
            if shutdownRequested == true {
                // Try once more right away rather than sleeping through the flush window.
                self.nextAttempt = .now
            }
            return true
        case .attempt:
            do {
                connection = try connect()
                loadedScripts.removeAll()
                backoff.reset()
                core.state.withLock { $0.isConnected = true }
                outage.connected()
                reportDropsAfterOutage()
            } catch {
                lastConnectError = error
                self.nextAttempt = .now + backoff.nextDelay()
                outage.connectFailed(error)
            }
            return true
        }
    }

    func connect() throws(RedisError) -> HiredisContext {
        let configuration = core.configuration
        let connection = try HiredisContext.connect(
            host: configuration.host, port: configuration.port, timeout: configuration.connectTimeout
        )
        connection.setSocketTimeout(configuration.socketTimeout)
        connection.enableKeepAlive()
        if let password = configuration.password {
            var auth = RedisCommand("AUTH")
            if let username = configuration.username { auth.append(username) }
            auth.append(password)
            let reply = try connection.command(auth)
            if let message = reply.errorMessage {
                throw RedisError(.authenticationFailed, "Redis refused the password: \(message)")
            }
        }
        if configuration.database != 0 {
            let reply = try connection.command(RedisCommand("SELECT", String(configuration.database)))
            if let message = reply.errorMessage {
                throw RedisError(.authenticationFailed, "Redis refused database \(configuration.database): \(message)")
            }
        } else if configuration.password == nil {
            // A connection counts only once Redis has answered: a dying server may still
            // complete a TCP handshake from its backlog, then reset the connection.
            let reply = try connection.command(RedisCommand("PING"))
            if let message = reply.errorMessage {
                let code: RedisError.Code = message.hasPrefix("NOAUTH") ? .authenticationFailed : .unavailable
                throw RedisError(code, "Redis refused the connection: \(message)")
            }
        }
        return connection
    }

    /// An error reply to a fire-and-forget command: nobody awaits it, so log it, at most
    /// once per `dropReportInterval` with a count.
    mutating func reportFailedCommand(_ command: RedisCommand, _ message: String) {
        failedCommands += 1
        let now = ContinuousClock.now
        if let last = lastFailureReport, now - last < Self.dropReportInterval { return }
        lastFailureReport = now
        core.logger.warning("Redis rejected a fire-and-forget command", metadata: [
            "command": "\(command.name)", "error": "\(message)", "failed_since_last_report": "\(failedCommands)",
        ])
        failedCommands = 0
    }

    /// Logs drops once per outage: the first, and the total when Redis is back.
    mutating func reportDrops() {
        let dropped = core.state.withLock { $0.droppedCommands }
        guard dropped > reportedDrops, lastDropReport == nil else { return }
        lastDropReport = .now
        core.logger.warning("Redis is away and the command buffer is full; dropping the oldest events (final events and results are kept)", metadata: [
            "buffer_limit": "\(core.configuration.maxBufferedCommands)",
        ])
    }

    /// After a reconnect: the outage's drop total, if there were drops.
    mutating func reportDropsAfterOutage() {
        let dropped = core.state.withLock { $0.droppedCommands }
        defer {
            reportedDrops = dropped
            lastDropReport = nil
        }
        guard dropped > reportedDrops else { return }
        core.logger.warning("Redis is back; commands dropped during the outage", metadata: ["dropped": "\(dropped - reportedDrops)"])
    }

    /// Fails whatever is left and closes the connection.
    mutating func stop() {
        var leftover = core.state.withLock { state -> [Work] in
            state.lifecycle = .stopped
            state.isConnected = false
            state.threadIsIdle = false
            defer {
                state.queue = []
                state.queuedCommands = 0
                state.queuedRequests = 0
            }
            return state.queue
        }
        leftover.insert(contentsOf: batch, at: 0)
        batch = []
        var unsent = 0
        for work in leftover {
            switch work {
            case .command:
                unsent += 1
            case .request(let request):
                request.continuation.resume(throwing: RedisError(.shutDown, "the Redis connection shut down before the command was sent"))
            }
        }
        if unsent > 0 {
            core.state.withLock { $0.droppedCommands += unsent }
            core.logger.warning("Redis command connection shut down with unsent fire-and-forget commands", metadata: [
                "unsent": "\(unsent)",
            ])
        }
        connection = nil
        core.logger.debug("Redis command connection stopped")
    }
}
