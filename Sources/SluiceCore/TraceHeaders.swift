import W3CTraceContext

/// The W3C trace context a job carries from the HTTP request that submitted it, through
/// its Kafka records, to its provider calls: the `traceparent` and `tracestate` headers,
/// validated.
///
/// Both come from outside (a client's HTTP header, a record any producer wrote), so they
/// are read as untrusted bytes: a `traceparent` that is not exactly
/// `00-<32 hex>-<16 hex>-<2 hex>` (lowercase, ids not all zero) is ignored, and with it
/// the whole context; a `tracestate` longer than ``maxTraceStateBytes`` or malformed is
/// dropped and the `traceparent` kept. Nothing here traps on any input.
public struct TraceHeaders: Sendable, Hashable {
    /// The header names, in HTTP requests and in Kafka record headers alike.
    public static let traceparentName = "traceparent"
    public static let tracestateName = "tracestate"
    /// A version-00 `traceparent` is exactly this long.
    public static let traceparentBytes = 55
    /// The longest `tracestate` kept (the W3C limit of 32 members fits in 512 bytes
    /// when each is as short as vendors keep them).
    public static let maxTraceStateBytes = 512

    /// `00-<trace id>-<parent span id>-<flags>`.
    public let traceparent: String
    public let tracestate: String?

    /// Reads the two header values; nil when `traceparent` is missing or malformed.
    public init?(traceparent: [UInt8], tracestate: [UInt8]? = nil) {
        guard traceparent.count == Self.traceparentBytes, let parent = Self.printableASCII(traceparent),
              (try? TraceContext(traceParentHeaderValue: parent)) != nil
        else { return nil }
        self.traceparent = parent
        if let tracestate, !tracestate.isEmpty, tracestate.count <= Self.maxTraceStateBytes,
           let state = Self.printableASCII(tracestate),
           (try? TraceContext(traceParentHeaderValue: parent, traceStateHeaderValue: state)) != nil {
            self.tracestate = state
        } else {
            self.tracestate = nil
        }
    }

    public init?(traceparent: String, tracestate: String? = nil) {
        self.init(traceparent: Array(traceparent.utf8), tracestate: tracestate.map { Array($0.utf8) })
    }

    /// Reads the context from name/value pairs (HTTP header fields, Kafka record
    /// headers; names compared case-insensitively, the last of a name winning as
    /// librdkafka's `header_get_last` does).
    public init?(fields: some Sequence<(name: String, value: [UInt8])>) {
        var parent: [UInt8]?
        var state: [UInt8]?
        for (name, value) in fields {
            if name.utf8.count == Self.traceparentName.utf8.count, name.lowercased() == Self.traceparentName {
                parent = value
            } else if name.utf8.count == Self.tracestateName.utf8.count, name.lowercased() == Self.tracestateName {
                state = value
            }
        }
        guard let parent else { return nil }
        self.init(traceparent: parent, tracestate: state)
    }

    /// The trace id: 32 lowercase hex digits.
    public var traceID: String { String(traceparent.dropFirst(3).prefix(32)) }
    /// The id of the span this context names as the parent: 16 lowercase hex digits.
    public var spanID: String { String(traceparent.dropFirst(36).prefix(16)) }
    /// Whether the caller recorded its span (the `sampled` flag).
    public var sampled: Bool {
        let flags = traceparent.utf8.suffix(2)
        return flags.last.map { Self.hexValue($0) & 1 == 1 } ?? false
    }

    /// The headers to send, `traceparent` first.
    public var fields: [(name: String, value: String)] {
        var out = [(name: Self.traceparentName, value: traceparent)]
        if let tracestate { out.append((name: Self.tracestateName, value: tracestate)) }
        return out
    }

    private static func printableASCII(_ bytes: some Collection<UInt8>) -> String? {
        guard bytes.allSatisfy({ (0x20...0x7E).contains($0) }) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: 0
        }
    }
}
