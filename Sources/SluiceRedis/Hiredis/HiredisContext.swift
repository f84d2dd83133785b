internal import CHiredis
import SluiceSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns one hiredis `redisContext` (a socket, an output buffer and a reply parser) and
/// frees it in `deinit`.
///
/// Not `Sendable`, on purpose: a context is created, used and freed by one dedicated
/// thread (the command connection's or the subscriber's) and never leaves it. This file and
/// `HiredisReply.swift` are the only places that see a hiredis type.
final class HiredisContext {
    private let context: UnsafeMutablePointer<redisContext>
    /// Scratch arrays for `redisAppendCommandArgv`, reused across commands.
    private var argv: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private var argvLengths: UnsafeMutablePointer<Int>
    private var argvCapacity: Int

    private init(_ context: UnsafeMutablePointer<redisContext>) {
        self.context = context
        argvCapacity = 8
        argv = .allocate(capacity: argvCapacity)
        argvLengths = .allocate(capacity: argvCapacity)
    }

    deinit {
        redisFree(context)
        argv.deallocate()
        argvLengths.deallocate()
    }

    /// Connects in blocking mode: every later call may block, up to the socket timeout.
    static func connect(host: String, port: Int, timeout: Duration) throws(RedisError) -> HiredisContext {
        guard let raw = redisConnectWithTimeout(host, Int32(port), timeval(timeout)) else {
            throw RedisError(.unavailable, "cannot allocate a hiredis context")
        }
        let connection = HiredisContext(raw)
        if raw.pointee.err != 0 {
            throw RedisError(.unavailable, connection.errorDescription)
        }
        return connection
    }

    /// Starts a non-blocking connect (host names are still resolved synchronously).
    /// The connection is usable once `fd` polls writable and `socketError` is 0.
    static func connectNonBlocking(host: String, port: Int) throws(RedisError) -> HiredisContext {
        guard let raw = redisConnectNonBlock(host, Int32(port)) else {
            throw RedisError(.unavailable, "cannot allocate a hiredis context")
        }
        let connection = HiredisContext(raw)
        if raw.pointee.err != 0 {
            throw RedisError(.unavailable, connection.errorDescription)
        }
        return connection
    }

    var fd: Int32 { context.pointee.fd }

    /// hiredis's description of the error that broke the context.
    var errorDescription: String {
        withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    private func failure(_ code: RedisError.Code = .connectionLost) -> RedisError {
        RedisError(code, errorDescription.isEmpty ? "connection error" : errorDescription)
    }

    /// Read and write timeout of a blocking context.
    func setSocketTimeout(_ timeout: Duration) {
        _ = redisSetTimeout(context, timeval(timeout))
    }

    /// TCP keepalive, so that a peer that vanished without a FIN is noticed (~30 s on Linux).
    func enableKeepAlive() {
        _ = redisEnableKeepAlive(context)
    }

    /// The pending error of a non-blocking connect (`SO_ERROR`); 0 once connected.
    var socketError: Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 {
            return errno
        }
        return error
    }

    /// Formats `command` into the output buffer (no I/O). `command` must not be empty.
    func append(_ command: RedisCommand) throws(RedisError) {
        if command.formattedCommands > 0 {
            let status = command.bytes.withUnsafeBytes { buffer in
                redisAppendFormattedCommand(context, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), buffer.count)
            }
            if status != REDIS_OK { throw failure() }
            return
        }
        let count = command.count
        if count > argvCapacity {
            argv.deallocate()
            argvLengths.deallocate()
            argvCapacity = max(count, argvCapacity * 2)
            argv = .allocate(capacity: argvCapacity)
            argvLengths = .allocate(capacity: argvCapacity)
        }
        let status = command.bytes.withUnsafeBytes { buffer -> Int32 in
            // An all-empty-arguments command has no storage; hiredis copies 0 bytes from it.
            let base = buffer.baseAddress ?? UnsafeRawPointer(argvLengths)
            var start = 0
            for index in 0..<count {
                let end = command.ends[index]
                argv[index] = (base + start).assumingMemoryBound(to: CChar.self)
                argvLengths[index] = end - start
                start = end
            }
            return redisAppendCommandArgv(context, Int32(count), argv, argvLengths)
        }
        if status != REDIS_OK {
            throw failure()
        }
    }

    /// Blocking: flushes the output buffer if needed and waits for the next reply.
    func readReply() throws(RedisError) -> HiredisReply {
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
            throw failure()
        }
        return HiredisReply(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// Runs one command on a blocking context and returns its reply.
    func command(_ command: RedisCommand) throws(RedisError) -> HiredisReply {
        try append(command)
        return try readReply()
    }

    /// Non-blocking: writes as much of the output buffer as the socket takes.
    /// Returns `true` when the buffer is empty.
    func writePending() throws(RedisError) -> Bool {
        var done: Int32 = 0
        guard redisBufferWrite(context, &done) == REDIS_OK else {
            throw failure()
        }
        return done != 0
    }

    /// Non-blocking: reads what the socket has into the reply parser.
    func readAvailable() throws(RedisError) {
        guard redisBufferRead(context) == REDIS_OK else {
            throw failure()
        }
    }

    /// The next complete reply already in the parser, without I/O.
    func nextBufferedReply() throws(RedisError) -> HiredisReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisGetReplyFromReader(context, &raw) == REDIS_OK else {
            throw failure()
        }
        guard let raw else { return nil }
        return HiredisReply(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// On an idle blocking connection (no reply outstanding) the socket can only become
    /// readable by closing or failing: a cheap liveness probe.
    var isClosedWhileIdle: Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }
}
