/// Where and how to reach Redis.
///
/// Build one from a URL, `redis://[[user]:password@]host[:port][/db]`, or field by field.
/// The password never appears in `description`, `debugDescription`, a mirror, a log line
/// or an error message.
public struct RedisConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The ACL user (Redis 6+); `nil` authenticates as the default user.
    public var username: String?
    public var password: String?
    /// The database `SELECT`ed by command connections (Pub/Sub ignores databases).
    public var database: Int

    /// How long one TCP connect may take.
    public var connectTimeout: Duration = .seconds(2)
    /// How long `execute` and `subscribe` wait for Redis to become reachable before they
    /// fail with `RedisError.Code.unavailable`.
    public var requestTimeout: Duration = .seconds(5)
    /// Read and write timeout on a command connection's socket: a Redis that stops
    /// answering for this long is treated as gone and reconnected. Blocking commands
    /// (`BLPOP` and the like) must not wait longer than this.
    public var socketTimeout: Duration = .seconds(10)
    /// How many fire-and-forget commands a `RedisConnection` queues before it drops the
    /// oldest ones (they pile up while Redis is unreachable).
    public var maxBufferedCommands: Int = 100_000

    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
    }

    /// Parses `redis://[[user]:password@]host[:port][/db]`. The port defaults to 6379 and
    /// the database to 0; user and password may be percent-encoded; an IPv6 host is
    /// written in brackets (`redis://[::1]:6379`).
    ///
    /// - Throws: `RedisError` with code `.invalidURL`, saying which part is wrong.
    public init(url: String) throws {
        func invalid(_ problem: String) -> RedisError {
            RedisError(.invalidURL, "invalid Redis URL: \(problem); expected redis://[[user]:password@]host[:port][/db]")
        }
        let schemeSeparator = "://"
        guard let schemeEnd = url.firstRange(of: schemeSeparator) else {
            throw invalid("missing \"redis://\"")
        }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "redis" else {
            if scheme == "rediss" {
                throw invalid("TLS (rediss://) is not supported")
            }
            throw invalid("scheme \"\(scheme)\" is not \"redis\"")
        }
        var rest = url[schemeEnd.upperBound...]
        if rest.contains("?") || rest.contains("#") {
            throw invalid("query and fragment are not supported")
        }

        // [[user]:password@]
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                username = try Self.percentDecoded(userInfo[..<colon], part: "user", invalid)
                password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], part: "password", invalid)
            } else {
                username = try Self.percentDecoded(userInfo, part: "user", invalid)
            }
            if username?.isEmpty == true { username = nil }
        }

        // [/db]
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let number = Int(path), number >= 0 else {
                    throw invalid("database \"\(path)\" is not a non-negative number")
                }
                database = number
            }
        }

        // host[:port]
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw invalid("IPv6 host is missing its closing \"]\"")
            }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let afterHost = rest[rest.index(after: close)...]
            if !afterHost.isEmpty {
                guard afterHost.first == ":" else {
                    throw invalid("unexpected \"\(afterHost)\" after the host")
                }
                portText = afterHost.dropFirst()
            }
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else {
            throw invalid("the host is empty")
        }
        var port = 6379
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else {
                throw invalid("port \"\(portText)\" is not a number from 1 to 65535")
            }
            port = number
        }
        self.init(host: String(host), port: port, username: username, password: password, database: database)
    }

    private static func percentDecoded(
        _ text: Substring,
        part: String,
        _ invalid: (String) -> RedisError
    ) throws -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else {
                // Say which part, never its text: it may be the password.
                throw invalid("bad percent-encoding in the \(part)")
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension RedisConfiguration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The URL with the password replaced by `***`.
    public var description: String {
        var userInfo = ""
        if password != nil {
            userInfo = "\(username ?? ""):***@"
        } else if let username {
            userInfo = "\(username)@"
        }
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "redis://\(userInfo)\(host):\(port)/\(database)"
    }

    public var debugDescription: String { description }

    /// Keeps the password out of `dump` and `String(reflecting:)`.
    public var customMirror: Mirror {
        Mirror(self, children: [
            "host": host, "port": port, "username": username as Any,
            "password": password == nil ? "nil" : "***", "database": database,
        ])
    }
}
