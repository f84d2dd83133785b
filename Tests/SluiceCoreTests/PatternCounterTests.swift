@testable import SluiceBench
import Testing

/// The bench's readers count relayed chunks with `PatternCounter`; a miscount would
/// report chunks that never arrived, or hide lost ones.
struct PatternCounterTests {
    @Test(arguments: ["data: ", "Tk0 ", "aab", "abab", "aaa"])
    func countsMatchesSplitAnywhere(pattern: String) {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array("abTk0 dt:".utf8)
        for _ in 0..<200 {
            let text = (0..<Int.random(in: 0...300, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            var counter = PatternCounter(pattern)
            var counted = 0
            var rest = text[...]
            while !rest.isEmpty {
                let n = Int.random(in: 1...max(1, min(7, rest.count)), using: &rng)
                counted += counter.feed(Array(rest.prefix(n)))
                rest = rest.dropFirst(n)
            }
            #expect(counted == Self.naiveCount(Array(pattern.utf8), in: text), "\(String(decoding: text, as: UTF8.self))")
        }
    }

    @Test func countsTheRelayedChunksOfAnSSEStream() {
        let stream = Array("data: {\"a\":\"Tk0 \"}\n\ndata: {\"b\":1}\n\ndata: [DONE]\n\n".utf8)
        var counter = PatternCounter("data: ")
        #expect(counter.feed(Array(stream[..<3])) + counter.feed(Array(stream[3...])) == 3)
    }

    /// Occurrences do not overlap: counting resumes after a match's end, so "aaa" in
    /// "aaaaaa" is 2.
    static func naiveCount(_ p: [UInt8], in t: [UInt8]) -> Int {
        var count = 0
        var i = 0
        while i + p.count <= t.count {
            if Array(t[i..<(i + p.count)]) == p { count += 1; i += p.count } else { i += 1 }
        }
        return count
    }
}
