import Testing
@testable import SluiceGateway

/// A client that did not ask for usage (`stream_options.include_usage`) gets no
/// usage-only chunk; every other chunk goes through, whatever empty arrays it holds.
struct UsageChunkTests {
    private func usageOnly(_ chunk: String) -> Bool {
        // Inside an envelope, as the relay sees it.
        let envelope = Array(#"{"job_id":"j","seq":3,"event":"chunk","data":"#.utf8) + Array(chunk.utf8) + [UInt8(ascii: "}")]
        let start = envelope.count - chunk.utf8.count - 1
        return JSONPeek.isUsageOnlyChunk(envelope, range: start..<(envelope.count - 1))
    }

    @Test func usageOnlyChunksAreTold() {
        #expect(usageOnly(#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#))
        #expect(usageOnly(#"{"id":"c","choices": [ ],"usage":{"total_tokens":8}}"#))
        #expect(usageOnly("{\"choices\":[\n\t]}"))
    }

    @Test func otherChunksAreNot() {
        // No empty array at all: the common case, told without scanning the structure.
        #expect(!usageOnly(#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"}}]}"#))
        // Empty arrays elsewhere: in the content, nested, or at the top level under
        // another key.
        #expect(!usageOnly(#"{"id":"c","choices":[{"index":0,"delta":{"content":"[]"}}]}"#))
        #expect(!usageOnly(#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[]}}]}"#))
        #expect(!usageOnly(#"{"id":"c","system_fingerprint":[],"choices":[{"index":0,"delta":{}}]}"#))
        #expect(!usageOnly(#"{"id":"c","usage":{"total_tokens":8}}"#))
        // An empty array right before the chunk (in the envelope) is not the chunk's.
        let envelope = Array(#"{"x":[],"data":{"choices":[{"index":0}]}}"#.utf8)
        let data = 15..<(envelope.count - 1)
        #expect(!JSONPeek.isUsageOnlyChunk(envelope, range: data))
    }
}
