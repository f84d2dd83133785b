/// An error from the Redis client: what went wrong (`code`) and a sentence for a human
/// (`message`). Messages never contain a password.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String
        private init(_ name: String) { description = name }

        /// A Redis URL could not be parsed.
        public static let invalidURL = Code("invalidURL")
        /// A command with no arguments was given to `execute`.
        public static let invalidCommand = Code("invalidCommand")
        /// Redis could not be reached within the request timeout.
        public static let unavailable = Code("unavailable")
        /// The connection broke after the command was sent: it may or may not have run.
        public static let connectionLost = Code("connectionLost")
        /// Redis refused the configured password or database.
        public static let authenticationFailed = Code("authenticationFailed")
        /// The connection or subscriber was shut down.
        public static let shutDown = Code("shutDown")
        /// A reader with a bounded buffer fell too far behind its channel.
        public static let subscriptionOverflow = Code("subscriptionOverflow")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "Redis error (\(code)): \(message)" }
}
