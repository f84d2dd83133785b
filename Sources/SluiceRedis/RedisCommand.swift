/// One Redis command: a name and binary-safe arguments.
///
/// The arguments are stored back to back in one byte buffer (plus their end offsets), so a
/// command costs two allocations however many arguments it has, and hands hiredis
/// pointers into that buffer without further copies. Build the per-chunk hot path like
///
///     var publish = RedisCommand("PUBLISH", channel)
///     publish.append(payload)          // [UInt8], or any sequence of bytes
///     connection.send(publish)
public struct RedisCommand: Sendable, Hashable {
    /// Every argument, concatenated.
    private(set) var bytes: [UInt8]
    /// `ends[i]` is the offset in `bytes` just past argument `i`.
    private(set) var ends: [Int]
    /// Non-zero for commands already in Redis's wire format: `bytes` is that many
    /// commands, in RESP, sent as they are (see `formatted(_:commands:)`).
    private(set) var formattedCommands = 0
    /// A pinned command is never dropped from `RedisConnection`'s buffer while Redis is
    /// away (a job's final event, its stored result): it waits for the connection.
    public var isPinned = false
    /// The script an `EVALSHA` command runs (`RedisCommand(script:keys:arguments:)`): what
    /// the connection loads, or sends as text, when Redis does not have it.
    public internal(set) var script: RedisScript?

    /// A command from text arguments, e.g. `RedisCommand("SET", key, value)`.
    public init(_ arguments: String...) {
        bytes = []
        ends = []
        bytes.reserveCapacity(arguments.reduce(0) { $0 + $1.utf8.count })
        ends.reserveCapacity(arguments.count + 1)
        for argument in arguments {
            append(argument)
        }
    }

    /// A command from binary arguments.
    public init(_ arguments: [[UInt8]]) {
        bytes = []
        ends = []
        bytes.reserveCapacity(arguments.reduce(0) { $0 + $1.count })
        ends.reserveCapacity(arguments.count)
        for argument in arguments {
            append(argument)
        }
    }

    /// Appends a binary argument: `[UInt8]`, `ArraySlice<UInt8>`, `UnsafeRawBufferPointer`,
    /// `String.UTF8View`, … copied once, straight into the command's buffer.
    public mutating func append(_ argument: some Sequence<UInt8>) {
        bytes.append(contentsOf: argument)
        ends.append(bytes.count)
    }

    /// Appends a binary argument (the common case, without generic dispatch).
    public mutating func append(_ argument: [UInt8]) {
        bytes.append(contentsOf: argument)
        ends.append(bytes.count)
    }

    /// Appends a text argument as its UTF-8 bytes.
    public mutating func append(_ argument: String) {
        append(argument.utf8)
    }

    /// Appends an integer argument in decimal, as Redis expects (`EXPIRE key 60`).
    public mutating func append(_ argument: some BinaryInteger) {
        append(String(argument).utf8)
    }

    /// Reserves room for `byteCount` more argument bytes and `count` more arguments.
    mutating func reserve(bytes byteCount: Int, arguments count: Int) {
        bytes.reserveCapacity(bytes.count + byteCount)
        ends.reserveCapacity(ends.count + count)
    }

    /// Reserves room for `byteCount` more argument bytes, to avoid regrowing the buffer
    /// when appending a large payload.
    public mutating func reserveCapacity(bytes byteCount: Int) {
        bytes.reserveCapacity(bytes.count + byteCount)
    }

    /// Commands already encoded in RESP (build them with `RESPWriter`), queued and
    /// answered as one unit: the per-chunk path writes its PUBLISH and XADD this way,
    /// straight into one buffer, with no formatting left for the connection's thread.
    public static func formatted(_ resp: [UInt8], commands: Int) -> RedisCommand {
        var command = RedisCommand([])
        command.bytes = resp
        command.formattedCommands = max(1, commands)
        return command
    }

    /// The number of arguments, the command name included (0 for formatted commands).
    public var count: Int { ends.count }

    public var isEmpty: Bool { ends.isEmpty && formattedCommands == 0 }

    /// How many replies the command gets.
    var replyCount: Int { formattedCommands == 0 ? 1 : formattedCommands }

    /// The arguments as separate byte arrays (a copy; meant for tests and diagnostics).
    public var arguments: [[UInt8]] {
        var start = 0
        return ends.map { end in
            defer { start = end }
            return Array(bytes[start..<end])
        }
    }

    /// The command name, for logs (never the arguments: they may hold secrets).
    var name: String {
        if formattedCommands > 0 {
            // `*N\r\n$L\r\nNAME\r\n…`: the first command's name.
            let lines = bytes.prefix(64).split(separator: 0x0A, maxSplits: 3)
            let first = lines.count > 2 ? String(decoding: lines[2].dropLast(), as: UTF8.self).uppercased() : "?"
            return formattedCommands > 1 ? "\(first) (+\(formattedCommands - 1) pipelined)" : first
        }
        guard let end = ends.first else { return "" }
        return String(decoding: bytes[..<end], as: UTF8.self).uppercased()
    }
}

/// Writes commands in RESP, Redis's wire format, into a byte buffer: for
/// `RedisCommand.formatted`.
///
///     var out: [UInt8] = []
///     RESPWriter.command(3, into: &out)
///     RESPWriter.bulk("PUBLISH", into: &out)
///     RESPWriter.bulk(channel, into: &out)
///     RESPWriter.bulk(payload, into: &out)
public enum RESPWriter {
    /// The header of a command of `arguments` arguments (its name included).
    @inline(__always) public static func command(_ arguments: Int, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "*"))
        decimal(arguments, into: &out)
        out.append(0x0D)
        out.append(0x0A)
    }

    @inline(__always) public static func bulk(_ bytes: [UInt8], into out: inout [UInt8]) {
        bytes.withUnsafeBytes { bulk($0, into: &out) }
    }

    public static func bulk(_ text: StaticString, into out: inout [UInt8]) {
        text.withUTF8Buffer { bulk(UnsafeRawBufferPointer($0), into: &out) }
    }

    @inline(__always) public static func bulk(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "$"))
        decimal(bytes.count, into: &out)
        out.append(0x0D)
        out.append(0x0A)
        out.append(contentsOf: bytes)
        out.append(0x0D)
        out.append(0x0A)
    }

    /// An integer argument, in decimal.
    public static func bulk(_ n: Int, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "$"))
        decimal(decimalLength(n), into: &out)
        out.append(0x0D)
        out.append(0x0A)
        decimal(n, into: &out)
        out.append(0x0D)
        out.append(0x0A)
    }

    /// `n` in decimal, without making a string.
    public static func decimal(_ n: Int, into out: inout [UInt8]) {
        if n < 0 {
            out.append(UInt8(ascii: "-"))
            decimal(UInt(n.magnitude), into: &out)
        } else {
            decimal(UInt(n), into: &out)
        }
    }

    static func decimal(_ n: UInt, into out: inout [UInt8]) {
        if n < 10 {
            out.append(0x30 + UInt8(n))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 20 digits
        var count = 0
        var v = n
        withUnsafeMutableBytes(of: &digits) { buffer in
            while v > 0 {
                buffer[23 - count] = 0x30 + UInt8(v % 10)
                v /= 10
                count += 1
            }
            out.append(contentsOf: buffer[(24 - count)...])
        }
    }

    /// The number of characters of `n` in decimal.
    public static func decimalLength(_ n: Int) -> Int {
        var length = n < 0 ? 2 : 1
        var v = n.magnitude
        while v >= 10 {
            v /= 10
            length += 1
        }
        return length
    }
}
