/// What a job's run needs of Redis: fire-and-forget commands (its events, results and
/// limiter updates), a wait while Redis cannot keep up, and the odd round trip (the
/// follow mark, the shared rate limit). `RedisConnection` is the one the worker uses;
/// tests give one that records what was sent. The worker's job runner is generic over
/// it, so publishing a chunk calls the connection directly.
public protocol RedisCommandSink: AnyObject, Sendable {
    /// Queues `command`; false when Redis cannot keep up (await `waitForRoom()`).
    @discardableResult func send(_ command: RedisCommand) -> Bool
    /// Queues `commands`, in order. See `send(_:)`.
    @discardableResult func send(_ commands: [RedisCommand]) -> Bool
    /// Queues `command` like `send(_:)`, but leaves a sleeping connection thread asleep
    /// until `wakeIfIdle()` (or the next `send`): for a producer that queues many
    /// commands in a burst and then wakes the thread once.
    @discardableResult func sendWithoutWaking(_ command: RedisCommand) -> Bool
    /// Wakes the connection thread if it sleeps with commands queued, at most once every
    /// `interval`; answers how long until queued commands may wake it, when they wait.
    @discardableResult func wakeIfIdle(atMostEvery interval: Duration) -> Duration?
    /// Returns once there is room for more commands.
    func waitForRoom() async
    /// Runs `command` and returns its reply.
    func execute(_ command: RedisCommand) async throws -> RedisReply
    /// Whether a working connection is held.
    var isConnected: Bool { get }
}

extension RedisCommandSink {
    @discardableResult public func sendWithoutWaking(_ command: RedisCommand) -> Bool { send(command) }
    @discardableResult public func wakeIfIdle(atMostEvery interval: Duration) -> Duration? { nil }
}

extension RedisConnection: RedisCommandSink {}
