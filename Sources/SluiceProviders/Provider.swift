import Foundation
import SluiceCore
import SluiceHTTPClient

/// Everything a provider needs for one attempt.
public struct ProviderCall: Sendable {
    public var provider: SluiceConfig.Provider
    public var model: String
    /// OpenAI-format messages (for a passthrough call, unused).
    public var messages: [JSONValue]
    public var parameters: [String: JSONValue]
    public var stream: Bool
    /// The key to send: the job's own, else the provider's configured one.
    public var apiKey: Secret?
    /// Smarter-style passthrough: this body is sent as it is.
    public var passthroughBody: JSONValue?
    public var connectTimeout: Duration = .seconds(10)
    /// No byte from the provider for this long fails the attempt.
    public var idleTimeout: Duration? = .seconds(120)
    /// No content (text or tool call) this long after the request started fails the
    /// attempt: a provider that accepts a request and then thinks forever.
    public var firstTokenTimeout: Duration?
    public var totalTimeout: Duration?

    public init(provider: SluiceConfig.Provider, model: String, messages: [JSONValue],
                parameters: [String: JSONValue], stream: Bool, apiKey: Secret?, passthroughBody: JSONValue? = nil) {
        self.provider = provider
        self.model = model
        self.messages = messages
        self.parameters = parameters
        self.stream = stream
        self.apiKey = apiKey
        self.passthroughBody = passthroughBody
    }
}

/// A failed provider attempt, with what the worker needs to decide on a retry.
public struct ProviderError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The provider answered with an error status.
        case http = "provider_error"
        /// No connection, or it broke.
        case connection = "connection_error"
        case timeout = "timeout"
        /// The response could not be understood, or the stream ended improperly.
        case protocolError = "provider_protocol_error"
        case cancelled = "cancelled"
        /// The request could not be sent as built (a header value with a line break, a
        /// URL that is not one): the job's own fault, the same for every target.
        case invalidRequest = "invalid_request"
    }

    public var kind: Kind
    public var message: String
    public var status: Int?
    public var retryable: Bool
    /// Seconds the provider asked to wait (`Retry-After`).
    public var retryAfter: Double?
    /// The response's rate-limit headers, when it had any.
    public var rateLimit: RateLimitHeaders?
    /// What the attempt produced before it failed (chunks already relayed, usage so
    /// far), when it failed mid-stream.
    public var partial: ProviderOutcome? {
        get { partialBox?.outcome }
        set { partialBox = newValue.map(PartialOutcome.init) }
    }
    /// `partial`, by reference: a job's async frames hold several errors at once, and
    /// the outcome would make each twice as large.
    private var partialBox: PartialOutcome?
    /// What the operator needs and the tenant must not see (a host and port, libcurl's
    /// text, a provider's words about the operator's key): logged, never put in a result.
    public var detail: String?

    public init(_ kind: Kind, _ message: String, status: Int? = nil, retryable: Bool, retryAfter: Double? = nil, detail: String? = nil) {
        self.kind = kind
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retryAfter = retryAfter
        self.detail = detail
    }

    public var description: String { "\(kind.rawValue): \(message)" }

    private final class PartialOutcome: Sendable {
        let outcome: ProviderOutcome
        init(_ outcome: ProviderOutcome) { self.outcome = outcome }
    }
}

/// A normalised chunk: the `chat.completion.chunk` JSON to publish, and its parsed form.
public struct ProviderChunk: Sendable {
    public var json: [UInt8]
    public var chunk: ChatCompletionChunk
}

/// What a finished attempt produced.
public struct ProviderOutcome: Sendable {
    public var accumulator: StreamAccumulator
    public var timing: TimingRecorder
    /// Whether the stream ended properly (finish reason, `[DONE]`, `message_stop`).
    public var streamComplete: Bool
    /// The provider's own response, for passthrough jobs (non-streaming only).
    public var raw: JSONValue?
    /// The response's rate-limit headers, when it had any.
    public var rateLimit: RateLimitHeaders? = nil
}

/// A provider's wire format: how to ask, and how to read the answer.
public protocol WireFormat: Sendable {
    func makeRequest(_ call: ProviderCall) throws -> CurlRequest
    /// A fresh decoder for one streaming response.
    func makeStreamDecoder(_ call: ProviderCall) -> any StreamDecoder
    /// Reads a complete (non-streaming) response body.
    func decodeCompletion(_ body: [UInt8], call: ProviderCall) throws -> ChatCompletion
    /// The error message in an error response body, if it has one.
    func errorMessage(_ body: [UInt8]) -> String?
}

/// Turns one response's Server-Sent Events into normalised chunks.
public protocol StreamDecoder: Sendable {
    /// Decodes one event. Returns the chunks it yields (often one, sometimes none).
    mutating func decode(_ event: SSEEvent) throws -> [ProviderChunk]
    /// Whether the provider's proper end of stream has been seen: OpenAI's `[DONE]`,
    /// Anthropic's `message_stop`, a `finishReason` on every Gemini candidate.
    var isComplete: Bool { get }
}

extension WireFormat {
    public func errorMessage(_ body: [UInt8]) -> String? {
        guard let v = try? JSON.decode(JSONValue.self, from: body) else { return nil }
        if let m = v["error"]?["message"]?.stringValue { return m }
        if let m = v["error"]?.stringValue { return m }
        if let m = v["message"]?.stringValue { return m }
        return nil
    }
}

public enum WireFormats {
    public static func format(for kind: SluiceConfig.Provider.Kind) throws -> any WireFormat {
        switch kind {
        case .openai, .openaiCompatible, .mock: OpenAIWireFormat()
        case .azure: OpenAIWireFormat(azure: true)
        case .anthropic: AnthropicWireFormat()
        case .gemini: GeminiWireFormat()
        }
    }
}
