import SluiceCore
import Testing

@Suite struct SSEParserTests {
    func events(_ pieces: [String]) -> [SSEEvent] {
        var parser = SSEParser()
        return pieces.flatMap { parser.feed(Array($0.utf8)) }
    }

    @Test func simpleEvents() {
        let out = events(["data: {\"a\":1}\n\ndata: [DONE]\n\n"])
        #expect(out.map(\.data) == ["{\"a\":1}", "[DONE]"])
    }

    @Test func splitAcrossReadsAtEveryByte() {
        let text = "event: chunk\nid: 7\ndata: hello\n\ndata: world\n\n"
        let out = events(text.map { String($0) })
        #expect(out == [SSEEvent(event: "chunk", data: "hello", id: "7"), SSEEvent(data: "world", id: "7")])
    }

    @Test func crlfAndBareCR() {
        #expect(events(["data: a\r\n\r\ndata: b\r\rdata: c\n\n"]).map(\.data) == ["a", "b", "c"])
        // A CRLF split between two reads is one line end, not two.
        #expect(events(["data: a\r", "\n", "\r", "\n"]).map(\.data) == ["a"])
    }

    @Test func commentsAreIgnored() {
        #expect(events([": keep-alive\n\n: ping\ndata: x\n\n"]).map(\.data) == ["x"])
    }

    @Test func multiLineDataIsJoinedWithNewlines() {
        #expect(events(["data: line1\ndata: line2\ndata\n\n"]).map(\.data) == ["line1\nline2\n"])
    }

    @Test func fieldsWithoutSpaceAndUnknownFields() {
        let out = events(["data:x\nfoo: bar\nretry: 3000\n\n"])
        #expect(out == [SSEEvent(data: "x", retry: 3000)])
    }

    @Test func byteOrderMarkAtStart() {
        #expect(events(["\u{FEFF}data: x\n\n"]).map(\.data) == ["x"])
    }

    @Test func eventWithoutDataIsNotDispatched() {
        #expect(events(["event: ping\n\ndata: y\n\n"]) == [SSEEvent(data: "y")])
    }

    @Test func finishFlushesAnUnterminatedEvent() {
        var parser = SSEParser()
        #expect(parser.feed(Array("data: tail".utf8)).isEmpty)
        #expect(parser.finish()?.data == "tail")
    }
}
