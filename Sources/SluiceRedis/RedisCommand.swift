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

    /// Reserves room for `byteCount` more argument bytes, to avoid regrowing the buffer
    /// when appending a large payload.
    public mutating func reserveCapacity(bytes byteCount: Int) {
        bytes.reserveCapacity(bytes.count + byteCount)
    }

    /// The number of arguments, the command name included.
    public var count: Int { ends.count }

    public var isEmpty: Bool { ends.isEmpty }

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
        guard let end = ends.first else { return "" }
        return String(decoding: bytes[..<end], as: UTF8.self).uppercased()
    }
}
