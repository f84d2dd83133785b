/// The error type of the domain model: a code, a message that says what was wrong and
/// what to do, and optional context. Never carries a secret.
public struct SluiceError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        case invalidJob = "invalid_job"
        case invalidRequest = "invalid_request"
        case unknownProvider = "unknown_provider"
        case unknownModel = "unknown_model"
        case missingVariable = "missing_variable"
        case unknownPrompt = "unknown_prompt"
        case unsupported = "unsupported"
        case provider = "provider_error"
        case timeout = "timeout"
        case cancelled = "cancelled"
        /// The job could not start before its `deadline` or `max_queue_s`.
        case expired = "expired"
        /// The job's tenant has spent its daily limit (`quotas`).
        case quotaExceeded = "quota_exceeded"
        case config = "config_error"
        case `internal` = "internal_error"
    }

    public var code: Code
    public var message: String
    public var context: [String: String]

    public init(_ code: Code, _ message: String, context: [String: String] = [:]) {
        self.code = code
        self.message = message
        self.context = context
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
