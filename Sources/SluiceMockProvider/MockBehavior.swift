import HTTPTypes

/// How the mock provider answers one request: pacing and fault injection.
///
/// The server's defaults come from ``MockProviderServer/init(host:port:defaults:logger:onServerRunning:)``;
/// a request overrides them with knobs in its model name, and request headers override
/// both. Headers are for tests, the model name for clients that cannot set headers (a job
/// on Kafka, a gateway request):
///
/// | header                          | model key      | meaning                                                        |
/// |---------------------------------|----------------|----------------------------------------------------------------|
/// | `x-mock-chunks: 20`             | `chunks=20`    | content chunks, one token each (default 8)                      |
/// | `x-mock-chunk-delay-ms: 50`     | `delay=50`     | pause between content chunks                                   |
/// | `x-mock-first-token-delay-ms: 200` | `ttft=200`  | pause before the first content chunk                           |
/// | `x-mock-status: 429`            | `status=429`   | this error status, with an error body in the request's format   |
/// | `x-mock-retry-after: 2`         | `retry-after=2`| `retry-after` header of that error                              |
/// | `x-mock-fail-after-chunks: 3`   | `fail-after=3` | drop the connection after that many content chunks              |
/// | `x-mock-no-finish: true`        | `no-finish=true` | end the stream without finish reason, usage or `[DONE]`       |
/// | `x-mock-malformed-chunk-at: 2`  | `malformed-at=2` | send content chunk 2 (1-based) as truncated JSON             |
///
/// Model syntax: comma-separated `key=value` items, the first one optionally prefixed by
/// a base name and a dash: `mock-chunks=20,delay=50,ttft=200` or `gpt-4o-mini-chunks=3`.
/// A model without `=` carries no knobs. The response echoes the model as sent.
public struct MockBehavior: Sendable, Hashable {
    /// Content chunks to send; each is one completion token.
    public var chunks: Int
    public var chunkDelay: Duration
    public var firstTokenDelay: Duration
    /// An error status to answer with instead of a completion; nil or 200 for none.
    public var status: Int?
    /// The `retry-after` header sent with `status`.
    public var retryAfter: String?
    /// Drop the connection (no chunked-encoding terminator) after this many content chunks.
    public var failAfterChunks: Int?
    /// End the stream after the content chunks, without the finish chunk, usage or `[DONE]`;
    /// a non-streaming completion gets `finish_reason: null`.
    public var noFinish: Bool
    /// The 1-based content chunk sent as truncated JSON (for a non-streaming request: the
    /// whole body is truncated JSON).
    public var malformedChunkAt: Int?

    public init(
        chunks: Int = 8,
        chunkDelay: Duration = .zero,
        firstTokenDelay: Duration = .zero,
        status: Int? = nil,
        retryAfter: String? = nil,
        failAfterChunks: Int? = nil,
        noFinish: Bool = false,
        malformedChunkAt: Int? = nil
    ) {
        self.chunks = chunks
        self.chunkDelay = chunkDelay
        self.firstTokenDelay = firstTokenDelay
        self.status = status
        self.retryAfter = retryAfter
        self.failAfterChunks = failAfterChunks
        self.noFinish = noFinish
        self.malformedChunkAt = malformedChunkAt
    }
}

/// A knob with a bad value: answered with a 400 naming it.
struct InvalidKnob: Error {
    var knob: String
    var value: String
}

extension MockBehavior {
    /// One knob: its model key, its header, and how to apply a value.
    private struct Knob: Sendable {
        var key: String
        var header: HTTPField.Name
        var apply: @Sendable (inout MockBehavior, String) -> Bool
    }

    private static let maxChunks = 1_000_000
    private static let maxDelayMs = 600_000

    private static let knobs: [Knob] = [
        Knob(key: "chunks", header: .init("x-mock-chunks")!) { behavior, value in
            guard let n = Int(value), (0...maxChunks).contains(n) else { return false }
            behavior.chunks = n
            return true
        },
        Knob(key: "delay", header: .init("x-mock-chunk-delay-ms")!) { behavior, value in
            guard let ms = Int(value), (0...maxDelayMs).contains(ms) else { return false }
            behavior.chunkDelay = .milliseconds(ms)
            return true
        },
        Knob(key: "ttft", header: .init("x-mock-first-token-delay-ms")!) { behavior, value in
            guard let ms = Int(value), (0...maxDelayMs).contains(ms) else { return false }
            behavior.firstTokenDelay = .milliseconds(ms)
            return true
        },
        Knob(key: "status", header: .init("x-mock-status")!) { behavior, value in
            guard let status = Int(value), (200...599).contains(status) else { return false }
            behavior.status = status
            return true
        },
        Knob(key: "retry-after", header: .init("x-mock-retry-after")!) { behavior, value in
            guard !value.isEmpty, value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return false }
            behavior.retryAfter = value
            return true
        },
        Knob(key: "fail-after", header: .init("x-mock-fail-after-chunks")!) { behavior, value in
            guard let n = Int(value), n >= 0 else { return false }
            behavior.failAfterChunks = n
            return true
        },
        Knob(key: "no-finish", header: .init("x-mock-no-finish")!) { behavior, value in
            guard let flag = Bool(value) else { return false }
            behavior.noFinish = flag
            return true
        },
        Knob(key: "malformed-at", header: .init("x-mock-malformed-chunk-at")!) { behavior, value in
            guard let n = Int(value), n >= 1 else { return false }
            behavior.malformedChunkAt = n
            return true
        },
    ]

    /// These defaults, overridden by the knobs in `model`, then by those in `headers`.
    func applying(model: String?, headers: HTTPFields) throws(InvalidKnob) -> MockBehavior {
        var behavior = self
        if let model, model.contains("=") {
            for item in model.split(separator: ",") {
                guard let equals = item.firstIndex(of: "=") else { throw InvalidKnob(knob: "model", value: String(item)) }
                let name = item[..<equals]
                let value = String(item[item.index(after: equals)...])
                // The key is the whole name or a suffix after a dash ("mock-chunks").
                guard let knob = Self.knobs.first(where: { name == $0.key || name.hasSuffix("-" + $0.key) }) else {
                    throw InvalidKnob(knob: "model", value: String(name))
                }
                guard knob.apply(&behavior, value) else { throw InvalidKnob(knob: knob.key, value: value) }
            }
        }
        for knob in Self.knobs {
            guard let value = headers[knob.header] else { continue }
            guard knob.apply(&behavior, value) else { throw InvalidKnob(knob: knob.header.rawName, value: value) }
        }
        return behavior
    }
}
