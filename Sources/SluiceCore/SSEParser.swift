/// One Server-Sent Event.
public struct SSEEvent: Sendable, Hashable {
    public var event: String?
    /// The event's data as UTF-8 bytes: what the per-chunk path hands on, uncopied.
    public var bytes: [UInt8]
    public var id: String?
    public var retry: Int?

    public init(event: String? = nil, data: String, id: String? = nil, retry: Int? = nil) {
        self.init(event: event, bytes: Array(data.utf8), id: id, retry: retry)
    }

    public init(event: String? = nil, bytes: [UInt8], id: String? = nil, retry: Int? = nil) {
        self.event = event
        self.bytes = bytes
        self.id = id
        self.retry = retry
    }

    /// The event's data as text.
    public var data: String { String(decoding: bytes, as: UTF8.self) }

    /// Whether the data is exactly `text` (`[DONE]`), without making a string.
    public func dataEquals(_ text: StaticString) -> Bool {
        text.withUTF8Buffer { $0.elementsEqual(bytes) }
    }
}

/// An incremental parser for `text/event-stream` (the WHATWG rules): feed it bytes as
/// they arrive, in pieces of any size, and it returns each event once its blank line is
/// in. Handles LF, CRLF and CR line ends (also split across reads), comment lines,
/// multi-line `data`, a field with no colon, and a leading byte-order mark.
///
/// The per-chunk path: lines are read in place from the buffer fed (a line is copied only
/// when it straddles two reads) and an event's data costs one allocation, its `bytes`.
public struct SSEParser: Sendable {
    /// The start of a line whose end has not arrived yet.
    private var pending: [UInt8] = []
    private var lastWasCR = false
    private var fields = Fields()

    public init() {}

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [SSEEvent] {
        var out: [SSEEvent] = []
        feed(bytes) { out.append($0) }
        return out
    }

    /// Feeds bytes, calling `emit` for each complete event.
    public mutating func feed(_ bytes: some Sequence<UInt8>, emit: (SSEEvent) -> Void) {
        let done: Void? = bytes.withContiguousStorageIfAvailable { feed(UnsafeRawBufferPointer($0), emit: emit) }
        if done == nil {
            let copy = Array(bytes)
            copy.withUnsafeBytes { feed($0, emit: emit) }
        }
    }

    /// Feeds bytes, calling `emit` for each complete event (the hot path: no generics, no
    /// per-byte appends).
    public mutating func feed(_ bytes: [UInt8], emit: (SSEEvent) -> Void) {
        bytes.withUnsafeBytes { feed($0, emit: emit) }
    }

    public mutating func feed(_ buffer: UnsafeRawBufferPointer, emit: (SSEEvent) -> Void) {
        let count = buffer.count
        guard count > 0 else { return }
        var i = 0
        if lastWasCR {
            lastWasCR = false
            if buffer[0] == 0x0A { i = 1 }  // the LF of a CRLF split across reads
        }
        var lineStart = i
        while i < count {
            let b = buffer[i]
            guard b == 0x0A || b == 0x0D else {
                i += 1
                continue
            }
            if pending.isEmpty {
                fields.line(UnsafeRawBufferPointer(rebasing: buffer[lineStart..<i]), emit)
            } else {
                pending.append(contentsOf: buffer[lineStart..<i])
                pending.withUnsafeBytes { fields.line($0, emit) }
                pending.removeAll(keepingCapacity: true)
            }
            i += 1
            if b == 0x0D {
                if i == count {
                    lastWasCR = true
                } else if buffer[i] == 0x0A {
                    i += 1
                }
            }
            lineStart = i
        }
        if lineStart < count { pending.append(contentsOf: buffer[lineStart..<count]) }
    }

    /// Flushes an event left without its final blank line when the stream ends. The
    /// spec discards it; providers that end without one (some do) are better served by
    /// keeping it, so the caller decides.
    public mutating func finish() -> SSEEvent? {
        if !pending.isEmpty {
            pending.withUnsafeBytes { fields.line($0) { _ in } }
            pending.removeAll(keepingCapacity: true)
        }
        return fields.dispatch()
    }

    /// The fields of the event being read.
    private struct Fields: Sendable {
        var sawFirstLine = false
        var data: [UInt8] = []
        var hasData = false
        var event: String?
        var id: String?
        var retry: Int?

        /// One complete line, without its line end.
        mutating func line(_ line: UnsafeRawBufferPointer, _ emit: (SSEEvent) -> Void) {
            let count = line.count
            if count == 0 {
                if let e = dispatch() { emit(e) }
                return
            }
            var start = 0
            if !sawFirstLine {
                sawFirstLine = true
                if count >= 3, line[0] == 0xEF, line[1] == 0xBB, line[2] == 0xBF { start = 3 }
            }
            guard start < count else { return }
            if line[start] == UInt8(ascii: ":") { return }  // comment
            var colon = start
            while colon < count, line[colon] != UInt8(ascii: ":") { colon += 1 }
            var valueStart = colon + 1
            if valueStart < count, line[valueStart] == 0x20 { valueStart += 1 }
            let value = UnsafeRawBufferPointer(rebasing: line[min(valueStart, count)..<count])
            let field = UnsafeRawBufferPointer(rebasing: line[start..<colon])

            if field.elementsEqual("data".utf8) {
                if hasData { data.append(0x0A) }
                data.append(contentsOf: value)
                hasData = true
            } else if field.elementsEqual("event".utf8) {
                event = String(decoding: value, as: UTF8.self)
            } else if field.elementsEqual("id".utf8) {
                if !value.contains(0) { id = String(decoding: value, as: UTF8.self) }
            } else if field.elementsEqual("retry".utf8) {
                if let n = Int(String(decoding: value, as: UTF8.self)) { retry = n }
            }
        }

        mutating func dispatch() -> SSEEvent? {
            defer {
                data.removeAll(keepingCapacity: true)
                hasData = false
                event = nil
                retry = nil
            }
            guard hasData else { return nil }
            // `id` persists across events (the last event ID), as the spec says.
            return SSEEvent(event: event, bytes: Array(data), id: id, retry: retry)
        }
    }
}
