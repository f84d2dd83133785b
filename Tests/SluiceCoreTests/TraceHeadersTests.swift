import Foundation
import SluiceCore
import Testing

/// The W3C trace context read from clients' HTTP headers and any producer's Kafka record
/// headers: exactly the valid shape is taken, anything else is ignored, nothing traps.
@Suite struct TraceHeadersTests {
    static let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test func readsAValidTraceparent() throws {
        let h = try #require(TraceHeaders(traceparent: Self.valid))
        #expect(h.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(h.spanID == "00f067aa0ba902b7")
        #expect(h.sampled)
        #expect(h.tracestate == nil)
        #expect(h.fields.map(\.name) == ["traceparent"])
        let unsampled = try #require(TraceHeaders(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"))
        #expect(!unsampled.sampled)
    }

    @Test(arguments: [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",      // short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",    // long
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",     // uppercase
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // forbidden version
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // unknown version, wrong length for it
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",     // null trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",     // null span id
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",     // delimiter
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",     // not hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",     // flags not hex
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     // padded
    ])
    func ignoresAMalformedTraceparent(_ value: String) {
        #expect(TraceHeaders(traceparent: value) == nil)
    }

    @Test func ignoresBytesThatAreNotPrintableASCII() {
        var bytes = Array(Self.valid.utf8)
        bytes[20] = 0xC3
        #expect(TraceHeaders(traceparent: bytes) == nil)
        bytes[20] = 0x00
        #expect(TraceHeaders(traceparent: bytes) == nil)
    }

    @Test func keepsAValidTracestateAndDropsABadOne() throws {
        let kept = try #require(TraceHeaders(traceparent: Self.valid, tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
        #expect(kept.tracestate == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        #expect(kept.fields.map(\.name) == ["traceparent", "tracestate"])

        let malformed = try #require(TraceHeaders(traceparent: Self.valid, tracestate: "=no-vendor,\u{7}"))
        #expect(malformed.tracestate == nil)
        #expect(malformed.traceparent == Self.valid)

        let long = "a=" + String(repeating: "b", count: TraceHeaders.maxTraceStateBytes)
        let tooLong = try #require(TraceHeaders(traceparent: Self.valid, tracestate: long))
        #expect(tooLong.tracestate == nil)
    }

    @Test func readsFieldsCaseInsensitivelyTheLastOfANameWinning() throws {
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let h = try #require(TraceHeaders(fields: [
            (name: "x-other", value: Array("1".utf8)),
            (name: "TraceParent", value: Array(Self.valid.utf8)),
            (name: "traceparent", value: Array(other.utf8)),
            (name: "TRACESTATE", value: Array("rojo=1".utf8)),
        ]))
        #expect(h.traceparent == other)
        #expect(h.tracestate == "rojo=1")
        #expect(TraceHeaders(fields: [(name: "tracestate", value: Array("rojo=1".utf8))]) == nil)
        #expect(TraceHeaders(fields: []) == nil)
    }

    /// What the W3C format says, written out byte by byte, independently of the parser.
    static func isWellFormed(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == 55, bytes[0] == UInt8(ascii: "0"), bytes[1] == UInt8(ascii: "0"),
              bytes[2] == UInt8(ascii: "-"), bytes[35] == UInt8(ascii: "-"), bytes[52] == UInt8(ascii: "-") else { return false }
        let hex = Set(Array("0123456789abcdef".utf8))
        for i in Array(3..<35) + Array(36..<52) + [53, 54] where !hex.contains(bytes[i]) { return false }
        return bytes[3..<35].contains { $0 != UInt8(ascii: "0") } && bytes[36..<52].contains { $0 != UInt8(ascii: "0") }
    }

    /// Random bytes and mutations of a valid value: taken exactly when well formed, and
    /// what is taken reads back the same.
    @Test func arbitraryBytesAreTakenExactlyWhenWellFormed() throws {
        var rng = FuzzTests.Rng(state: FuzzTests.seed)
        var taken = 0
        for i in 0..<FuzzTests.iterations {
            var bytes: [UInt8]
            if i % 4 == 0 {
                bytes = (0..<Int.random(in: 0...80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = Array(Self.valid.utf8)
                for _ in 0..<Int.random(in: 0...2, using: &rng) {
                    let at = Int.random(in: 0..<bytes.count, using: &rng)
                    // Mostly characters a trace id could hold, so some mutants stay valid.
                    bytes[at] = Bool.random(using: &rng)
                        ? Array("0123456789abcdef".utf8).randomElement(using: &rng)!
                        : UInt8.random(in: 0...255, using: &rng)
                }
            }
            let state = (0..<Int.random(in: 0...600, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let parsed = TraceHeaders(traceparent: bytes, tracestate: state)
            #expect((parsed != nil) == Self.isWellFormed(bytes), "\(bytes)")
            if let parsed {
                taken += 1
                #expect(Array(parsed.traceparent.utf8) == bytes)
                #expect(parsed.tracestate.map { $0.utf8.count <= TraceHeaders.maxTraceStateBytes } ?? true)
                #expect(TraceHeaders(traceparent: parsed.traceparent, tracestate: parsed.tracestate) == parsed)
            }
        }
        #expect(taken > FuzzTests.iterations / 10)
    }

    @Test func tracingConfigIsOffByDefaultAndChecked() throws {
        #expect(!SluiceConfig().tracing.isEnabled)
        let on = try SluiceConfig.parse(yaml: """
            tracing:
              otlp_endpoint: http://127.0.0.1:4318
              otlp_protocol: http/json
              service_name: edge-workers
              sample_ratio: 0.25
            """)
        #expect(on.tracing.tracesURL == "http://127.0.0.1:4318/v1/traces")
        #expect(on.tracing.otlpProtocol == .httpJSON)
        #expect(on.tracing.serviceName == "edge-workers")
        #expect(on.tracing.sampleRatio == 0.25)
        for bad in ["tracing: {otlp_endpoint: \"127.0.0.1:4318\"}", "tracing: {otlp_endpoint: \"ftp://x\"}",
                    "tracing: {sample_ratio: 1.5}", "tracing: {service_name: \(String(repeating: "s", count: 257))}",
                    "tracing: {otlp_protocol: grpc}"] {
            #expect(throws: SluiceError.self, "\(bad)") { try SluiceConfig.parse(yaml: bad) }
        }
    }
}
