import Foundation
import SluiceCore
import Testing

/// `ChunkReader` reads OpenAI chunks in place on the per-chunk path; JSONDecoder is the
/// reference. Whenever the reader gives a chunk it must be exactly what JSONDecoder gives,
/// and it must never accept bytes JSONDecoder rejects.
@Suite struct ChunkReaderTests {
    /// The data lines of every recorded OpenAI-format stream, plus hand-made edge cases.
    static var samples: [[UInt8]] {
        let streams = [OpenAIWireStreamTests.azure, OpenAIWireStreamTests.toolsWithUsageChunk, OpenAIWireStreamTests.usageOnFinishChunk]
        var out: [[UInt8]] = []
        for stream in streams {
            var parser = SSEParser()
            for event in parser.feed(Array(stream.utf8)) where !event.dataEquals("[DONE]") {
                out.append(event.bytes)
            }
        }
        out += [
            #"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"line\nbreak \"quoted\" \\ \/ \t tab \u00e9 \ud83e\udd80 é 🦀"},"finish_reason":null}]}"#,
            #" { "id" : null , "created" : null , "model" : null , "choices" : null , "usage" : null } "#,
            #"{"choices":[{"delta":null,"finish_reason":"length"}],"created":-0}"#,
            #"{"id":"x","choices":[{"index":3,"delta":{"role":"assistant","content":""},"logprobs":{"content":[{"token":"a","logprob":-0.5e-3,"bytes":[97],"top_logprobs":[]}]}}],"extra":[true,false,null,{"k":"\u0000"}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":null,"type":null,"function":null},{"function":{"name":"f","arguments":"{}","x":1}}]}}]}"#,
            #"{"usage":{"prompt_tokens":5,"completion_tokens":null,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":2,"x":[1.5,"y"]}}}"#,
            #"{"error":{"message":"boom","type":"server_error"}}"#,
            #"{}"#,
        ].map { Array($0.utf8) }
        return out
    }

    @Test func readsWhatJSONDecoderReads() throws {
        var fast = 0
        for sample in Self.samples {
            let reference = try JSON.decode(ChatCompletionChunk.self, from: sample)
            if let chunk = ChunkReader.read(sample) {
                #expect(chunk == reference, "\(String(decoding: sample, as: UTF8.self))")
                fast += 1
            }
        }
        // Every sample here is plain enough for the fast path.
        #expect(fast == Self.samples.count)
    }

    @Test func reusesTheStringsOfThePreviousChunk() throws {
        let a = Array(#"{"id":"chatcmpl-0123456789abcdef","model":"gpt-4o-mini-2024-07-18","choices":[]}"#.utf8)
        let b = Array(#"{"id":"chatcmpl-0123456789abcdef","model":"gpt-4o-mini-2024-07-19","choices":[]}"#.utf8)
        let first = try #require(ChunkReader.read(a))
        let second = try #require(ChunkReader.read(b, previous: first))
        #expect(second.id == first.id)
        #expect(second.model == "gpt-4o-mini-2024-07-19")
    }

    @Test func leavesTheUnusualToJSONDecoder() {
        let unusual = [
            #"{"created":1.0}"#,                          // an integer written as a fraction
            #"{"id":"a","id":"b"}"#,                      // a repeated key
            #"{"\u0069d":"a"}"#,                          // an escaped key
            #"{"choices":[{"delta":{"content":"\ud800"}}]}"#,  // a lone surrogate
            #"{"choices":[]} x"#,                         // trailing bytes
            #"{"choices":[],}"#,                          // trailing comma
            #"{"created":01}"#,                           // leading zero
            "{\"choices\":[{\"delta\":{\"content\":\"a\tb\"}}]}", // a raw tab inside a string
            "{\"model\":\"\u{FF}\"}",                     // not UTF-8 (as bytes below)
        ]
        for text in unusual {
            var bytes = Array(text.utf8)
            if text.contains("\u{FF}") { bytes = Array(#"{"model":""#.utf8) + [0xFF] + Array(#""}"#.utf8) }
            #expect(ChunkReader.read(bytes) == nil, "\(text)")
        }
    }

    /// Mutated chunks: the reader may decline, but what it accepts JSONDecoder accepts,
    /// with the same value.
    @Test func neverDisagreesWithJSONDecoder() {
        var rng = FuzzTests.Rng(state: FuzzTests.seed &+ 7)
        let samples = Self.samples
        var accepted = 0
        var declined = 0
        for _ in 0..<FuzzTests.iterations {
            let input = FuzzTests.mutate(samples.randomElement(using: &rng)!, &rng)
            guard let chunk = ChunkReader.read(input) else {
                declined += 1
                continue
            }
            accepted += 1
            let reference = try? JSON.decode(ChatCompletionChunk.self, from: input)
            #expect(reference == chunk, "\(String(decoding: input, as: UTF8.self))")
        }
        #expect(accepted > 0 && declined > 0, "the mutations reach both outcomes")
    }
}

/// `JSONValue.parse` and `JSONValue.write` replace JSONDecoder and JSONEncoder for the
/// JSON the worker and gateway carry through (jobs, request bodies, event data). The
/// Codable path is the reference.
@Suite struct JSONValueFastPathTests {
    static func foundation(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    static let corpus: [String] = FuzzTests.corpus.filter { !$0.hasPrefix("data:") } + [
        #"{"a":[1,-2,3.25,-0,1e3,1E-2,12345678901234567890,0.1,true,false,null,"x\u00e9\ud83e\udd80\n"],"b":{},"c":[],"d":{"e":{"f":[[[]]]}}}"#,
        #"  [ 1 , "two" , { "three" : 3 } ]  "#,
        #""just a string""#, "42", "null", "-1.5e-7",
    ]

    @Test func parsesWhatJSONDecoderParses() throws {
        for text in Self.corpus {
            let bytes = Array(text.utf8)
            let reference = try #require(Self.foundation(bytes), "\(text)")
            #expect(try JSONValue.parse(bytes) == reference, "\(text)")
        }
    }

    @Test func neverDisagreesWithJSONDecoder() {
        var rng = FuzzTests.Rng(state: FuzzTests.seed &+ 11)
        var accepted = 0
        var rejected = 0
        for _ in 0..<FuzzTests.iterations {
            let input = FuzzTests.mutate(Array(Self.corpus.randomElement(using: &rng)!.utf8), &rng)
            let reference = Self.foundation(input)
            let fast = try? JSONValue.parse(input)
            #expect(fast == reference, "\(String(decoding: input, as: UTF8.self))")
            if fast != nil { accepted += 1 } else { rejected += 1 }
        }
        #expect(accepted > 0 && rejected > 0, "the mutations reach both outcomes")
    }

    /// What `write` produces reads back, through JSONDecoder, as the same value.
    @Test func writesWhatReadsBack() throws {
        for text in Self.corpus {
            let value = try JSONValue.parse(Array(text.utf8))
            let written = try JSON.encode(value)
            #expect(Self.foundation(written) == value, "\(String(decoding: written, as: UTF8.self))")
        }
        let awkward: JSONValue = ["q": "\"\\/\u{0}\u{1F}\t\r\n\u{7F}\u{2028}é", "n": [0.1, -3, 1e300, 5e-324, 9.1e15, -0.5]]
        #expect(Self.foundation(try JSON.encode(awkward)) == awkward)
        #expect(throws: (any Error).self) { try JSON.encode(JSONValue.number(.infinity)) }
    }
}
