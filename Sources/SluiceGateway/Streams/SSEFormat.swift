import HTTPTypes
import Hummingbird
import SluiceCore

/// Writes events in `text/event-stream` framing.
enum SSEFormat {
    /// The headers of every event stream: no caching, and no buffering by a proxy in
    /// front (nginx honours `X-Accel-Buffering`).
    static let headers: HTTPFields = [
        .contentType: "text/event-stream",
        .cacheControl: "no-cache",
        .xAccelBuffering: "no",
    ]

    /// `id: N`, `event: name`, `data: {...}` and the blank line.
    static func event(id: Int, name: String, data: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        writeEvent(id: id, name: name, data: data, range: 0..<data.count, to: &buffer)
        return buffer
    }

    /// `data: {...}` and the blank line (OpenAI's style: no `event:` lines).
    static func data(_ data: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer()
        writeData(data, range: 0..<data.count, to: &buffer)
        return buffer
    }

    /// Appends `id: N`, `event: name`, the `data:` lines of `bytes[range]` and the blank
    /// line to `buffer`, where other events may already be waiting to go out with it.
    static func writeEvent(id: Int, name: String, data bytes: [UInt8], range: Range<Int>, to buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: range.count + name.utf8.count + 40)
        buffer.writeStaticString("id: ")
        writeDecimal(id, to: &buffer)
        buffer.writeStaticString("\nevent: ")
        buffer.writeString(name)
        buffer.writeStaticString("\n")
        writeData(bytes, range: range, to: &buffer)
    }

    /// Appends the `data:` lines of `bytes[range]` and the closing blank line to
    /// `buffer`; a value with line breaks (JSON may have them as whitespace) takes one
    /// `data:` line per line.
    static func writeData(_ bytes: [UInt8], range: Range<Int>, to buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: range.count + 8)
        bytes.withUnsafeBufferPointer { all in
            let value = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: all[range]))
            guard value.contains(0x0A) else {
                buffer.writeStaticString("data: ")
                buffer.writeBytes(value)
                buffer.writeStaticString("\n\n")
                return
            }
            for line in value.split(separator: 0x0A, omittingEmptySubsequences: false) {
                buffer.writeStaticString("data: ")
                buffer.writeBytes(line.filter { $0 != 0x0D })
                buffer.writeStaticString("\n")
            }
            buffer.writeStaticString("\n")
        }
    }

    /// A non-negative decimal (an event id) without making a string; others via one.
    private static func writeDecimal(_ n: Int, to buffer: inout ByteBuffer) {
        guard n >= 0 else {
            buffer.writeString(String(n))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes, enough for Int.max
        withUnsafeMutableBytes(of: &digits) { out in
            var i = out.count
            var rest = n
            repeat {
                i -= 1
                out[i] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            } while rest > 0
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: out[i...]))
        }
    }

    static let heartbeat = ByteBuffer(string: ": keep-alive\n\n")
    /// The end of an OpenAI-style stream.
    static let done = ByteBuffer(string: "data: [DONE]\n\n")
}

extension HTTPField.Name {
    static let xAccelBuffering = HTTPField.Name("X-Accel-Buffering")!
    static let lastEventID = HTTPField.Name("Last-Event-ID")!
    /// The job a completion response belongs to, for `GET /v1/jobs/{id}` and its events.
    static let sluiceJobID = HTTPField.Name("X-Sluice-Job-Id")!
    static let portkeyAPIKey = HTTPField.Name("x-portkey-api-key")!
    static let xAPIKey = HTTPField.Name("x-api-key")!
}

/// Reads top-level fields of a JSON object inside a larger buffer without decoding it
/// and without allocating: what the relay needs to look at a chunk or a result.
enum JSONPeek {
    /// The byte range of the top-level value of `key` in the object at `range` of
    /// `bytes`; nil if absent or if the bytes are not an object.
    static func value(of key: StaticString, in bytes: [UInt8], range: Range<Int>) -> Range<Int>? {
        JSONScanner.value(of: key, in: bytes, range: range)
    }

    /// Whether a `chat.completion.chunk` carries only usage (`"choices": []`): OpenAI
    /// sends that chunk only to clients that asked with `stream_options.include_usage`.
    static func isUsageOnlyChunk(_ bytes: [UInt8], range: Range<Int>) -> Bool {
        // Per relayed chunk. A usage-only chunk holds an empty array (`[`, maybe spaces,
        // `]`); most chunks hold none, which a look at each `]` tells without a scan of
        // the chunk's structure.
        guard hasEmptyArray(bytes, range: range) else { return false }
        guard let choices = value(of: "choices", in: bytes, range: range) else { return false }
        var i = choices.lowerBound + 1
        while i < choices.upperBound, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        return bytes[choices.lowerBound] == UInt8(ascii: "[") && i < choices.upperBound && bytes[i] == UInt8(ascii: "]")
    }

    /// Whether `[`, then only JSON whitespace, then `]` occurs in `range` of `bytes`
    /// (inside a string or not).
    static func hasEmptyArray(_ bytes: [UInt8], range: Range<Int>) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            let start = max(range.lowerBound, 0)
            var i = start
            let n = min(range.upperBound, buffer.count)
            while i < n {
                if buffer[i] == UInt8(ascii: "]") {
                    var j = i - 1
                    while j >= start, buffer[j] == 0x20 || buffer[j] == 0x0A || buffer[j] == 0x0D || buffer[j] == 0x09 { j -= 1 }
                    if j >= start, buffer[j] == UInt8(ascii: "[") { return true }
                }
                i += 1
            }
            return false
        }
    }

    /// The string value of `key` if it has no escapes (enough for `status`).
    static func plainString(of key: StaticString, in bytes: [UInt8], range: Range<Int>) -> String? {
        guard let r = value(of: key, in: bytes, range: range), r.count >= 2, bytes[r.lowerBound] == UInt8(ascii: "\"") else {
            return nil
        }
        return String(decoding: bytes[(r.lowerBound + 1)..<(r.upperBound - 1)], as: UTF8.self)
    }
}
