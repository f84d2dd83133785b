import Foundation
import SluiceCore
import Testing

/// Random and mutated input for the parsers that face the outside world: the job
/// parser (every Kafka message), the SSE parser (every provider byte) and the event
/// envelope scanner. Zero crashes is the assertion; each run is reproducible from its
/// seed. `SLUICE_FUZZ_ITERATIONS` scales it (scripts/fuzz.sh runs it for minutes).
@Suite struct FuzzTests {
    static let iterations = Int(ProcessInfo.processInfo.environment["SLUICE_FUZZ_ITERATIONS"] ?? "") ?? 20_000
    static let seed = UInt64(ProcessInfo.processInfo.environment["SLUICE_FUZZ_SEED"] ?? "") ?? 0x5EED_51CE

    /// SplitMix64: small, fast, and the same sequence everywhere for a seed.
    struct Rng: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let corpus: [String] = [
        #"{"id":"job-1","model":"default","messages":[{"role":"user","content":"Hello"}],"parameters":{"temperature":0.7},"stream":true}"#,
        #"{"chat_input":"Hi","model":"gpt-4o","is_stream":"false","api_key":"sk-x","fallbacks":[{"provider":"a","model":"b"}]}"#,
        #"{"prompt_id":"welcome","variables":{"name":"Ada","n":[1,2,{"x":null}]},"timeout_s":1.5e2}"#,
        #"{"passthrough":true,"provider":"openai","body":{"model":"m","messages":[],"tools":[{"type":"function"}]}}"#,
        "data: {\"choices\":[{\"delta\":{\"content\":\"\\u00e9\\n\"}}]}\r\n\r\n: ping\n\ndata: [DONE]\n\n",
    ]

    static let tokens: [[UInt8]] = ["{", "}", "[", "]", "\"", ":", ",", "\\", "\\u", "null", "true", "-1e309", "0x", "\n", "\r", "data:", "id:", "event:", "\u{FEFF}", "\u{0}", "é", "🦀"].map { Array($0.utf8) }

    static func mutate(_ input: [UInt8], _ rng: inout Rng) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...6, using: &rng) {
            let op = Int.random(in: 0..<5, using: &rng)
            let at = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
            switch op {
            case 0 where !bytes.isEmpty: bytes[at] = UInt8.random(in: 0...255, using: &rng)
            case 1 where !bytes.isEmpty: bytes.remove(at: at)
            case 2: bytes.insert(contentsOf: tokens.randomElement(using: &rng)!, at: at)
            case 3 where !bytes.isEmpty: bytes = Array(bytes[..<at])
            default:
                let len = Int.random(in: 0...8, using: &rng)
                bytes.insert(contentsOf: (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            }
        }
        return bytes
    }

    @Test func jobParserNeverCrashes() {
        var rng = Rng(state: Self.seed)
        var parsed = 0
        var rejected = 0
        for i in 0..<Self.iterations {
            let input = i % 10 == 0
                ? (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                : Self.mutate(Array(Self.corpus.randomElement(using: &rng)!.utf8), &rng)
            do {
                let job = try Job.parse(input, key: i % 2 == 0 ? "k\(i)" : nil)
                #expect(!job.id.isEmpty)
                parsed += 1
            } catch let e as SluiceError {
                #expect(e.code == .invalidJob)
                #expect(!e.message.isEmpty)
                rejected += 1
            } catch {
                Issue.record("unexpected error type \(error)")
            }
        }
        #expect(parsed + rejected == Self.iterations)
        #expect(parsed > 0 && rejected > 0, "the mutations reach both outcomes")
    }

    @Test func sseParserNeverCrashesAndIsSplitInvariant() {
        var rng = Rng(state: Self.seed &+ 1)
        for _ in 0..<Self.iterations / 4 {
            let input = Self.mutate(Array(Self.corpus[4].utf8) + Array(Self.corpus[4].utf8), &rng)
            var whole = SSEParser()
            let expected = whole.feed(input)
            // The same bytes in random pieces give the same events.
            var split = SSEParser()
            var got: [SSEEvent] = []
            var i = 0
            while i < input.count {
                let n = Int.random(in: 1...max(1, input.count - i), using: &rng)
                got += split.feed(input[i..<(i + n)])
                i += n
            }
            #expect(got == expected)
        }
    }

    /// The in-place parser against the byte-at-a-time one it replaced, on mutated input
    /// fed in random pieces.
    @Test func sseParserAgreesWithTheReferenceParser() {
        var rng = Rng(state: Self.seed &+ 3)
        for _ in 0..<Self.iterations / 4 {
            let input = Self.mutate(Array(Self.corpus[4].utf8) + Array(Self.corpus[4].utf8), &rng)
            var reference = ReferenceSSEParser()
            var expected = reference.feed(input)
            if let last = reference.finish() { expected.append(last) }
            var parser = SSEParser()
            var got: [SSEEvent] = []
            var i = 0
            while i < input.count {
                let n = Int.random(in: 1...max(1, input.count - i), using: &rng)
                got += parser.feed(Array(input[i..<(i + n)]))
                i += n
            }
            if let last = parser.finish() { got.append(last) }
            // The reference made text of the data (repairing bad UTF-8); compare as text.
            #expect(got.map { [$0.event, $0.data, $0.id, $0.retry.map(String.init)] }
                == expected.map { [$0.event, $0.data, $0.id, $0.retry.map(String.init)] })
        }
    }

    @Test func envelopePeekNeverCrashes() {
        var rng = Rng(state: Self.seed &+ 2)
        let envelope = EventEnvelope.encode(jobID: "j", seq: 3, event: .chunk, data: Array(Self.corpus[0].utf8), ts: 1)
        for _ in 0..<Self.iterations / 2 {
            let input = Self.mutate(envelope, &rng)
            if let p = EventEnvelope.peek(input) {
                #expect(p.data.lowerBound >= 0 && p.data.upperBound <= input.count)
            }
        }
    }
}
