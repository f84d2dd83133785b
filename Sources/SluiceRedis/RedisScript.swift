import Crypto

/// A Lua script, run by its SHA1 (`EVALSHA`) rather than by sending its text each time.
///
/// Declare each script once, as a `static let`, and build its commands with
/// `RedisCommand(script:keys:arguments:)`. `RedisConnection` loads a script (`SCRIPT
/// LOAD`, one round trip) before it writes the first batch that uses it, and again on
/// every new connection (a restarted Redis has no scripts). A `NOSCRIPT` answer (the cache was flushed under a live connection) is answered by
/// sending that command again as a plain `EVAL` with the script's text.
///
/// A class, so that a command carries it as one pointer (nil for every other command).
public final class RedisScript: Sendable, Hashable, CustomStringConvertible {
    /// The Lua text.
    public let source: String
    /// The SHA1 of `source` in lowercase hex, as Redis names cached scripts.
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        for byte in Insecure.SHA1.hash(data: Array(source.utf8)) {
            hex += [digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]]
        }
        sha1 = String(decoding: hex, as: UTF8.self)
    }

    public static func == (a: RedisScript, b: RedisScript) -> Bool { a.sha1 == b.sha1 }
    public func hash(into hasher: inout Hasher) { hasher.combine(sha1) }

    /// The script's SHA1 (never its text: logs name scripts by it).
    public var description: String { "script \(sha1.prefix(12))" }
}

extension RedisCommand {
    /// `EVALSHA sha numkeys key… argument…` for `script`; the connection falls back to
    /// `EVAL` with the text when Redis does not know the script.
    public init(script: RedisScript, keys: [String], arguments: [String]) {
        self.init([])
        reserve(bytes: 48 + keys.reduce(0) { $0 + $1.utf8.count } + arguments.reduce(0) { $0 + $1.utf8.count },
                arguments: 3 + keys.count + arguments.count)
        append("EVALSHA")
        append(script.sha1)
        append(keys.count)
        for key in keys { append(key) }
        for argument in arguments { append(argument) }
        self.script = script
    }

    /// A script written as the argument list of a plain `EVAL` (`["EVAL", source,
    /// numkeys, key…, argument…]`, the form the domain model gives its scripts in), run
    /// as `EVALSHA` of `script`, which must hold that same source.
    public init(script: RedisScript, evalArguments: [String]) {
        precondition(evalArguments.count >= 3 && evalArguments[0] == "EVAL", "an EVAL argument list starts with EVAL, the script and numkeys")
        assert(evalArguments[1] == script.source, "the EVAL arguments carry another script than \(script)")
        self.init([])
        // Sized once: several of these are built per job, and growing the two buffers
        // argument by argument reallocated them each time.
        let arguments = evalArguments.dropFirst(2)
        reserve(bytes: 7 + script.sha1.utf8.count + arguments.reduce(0) { $0 + $1.utf8.count }, arguments: 2 + arguments.count)
        append("EVALSHA")
        append(script.sha1)
        for argument in arguments { append(argument) }
        self.script = script
    }

    /// The same command as a plain `EVAL` with the script's text (for a Redis that does
    /// not have the script cached). Nil for a command that is not a script.
    var withScriptText: RedisCommand? {
        guard let script else { return nil }
        var eval = RedisCommand("EVAL", script.source)
        var start = ends.count > 1 ? ends[1] : bytes.count
        for end in ends.dropFirst(2) {
            eval.append(bytes[start..<end])
            start = end
        }
        eval.isPinned = isPinned
        return eval
    }
}
