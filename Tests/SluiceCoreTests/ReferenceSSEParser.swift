import SluiceCore

/// The straightforward byte-at-a-time SSE parser SSEParser replaced: kept as the
/// reference the fast one is checked against (FuzzTests).
struct ReferenceSSEParser {
    private var line: [UInt8] = []
    private var lastWasCR = false
    private var sawFirstLine = false
    private var data: [UInt8] = []
    private var hasData = false
    private var event: String?
    private var id: String?
    private var retry: Int?

    init() {
        line.reserveCapacity(512)
    }

    mutating func feed(_ bytes: some Sequence<UInt8>) -> [SSEEvent] {
        var out: [SSEEvent] = []
        feed(bytes) { out.append($0) }
        return out
    }

    /// Feeds bytes, calling `emit` for each complete event (no array on the hot path).
    mutating func feed(_ bytes: some Sequence<UInt8>, emit: (SSEEvent) -> Void) {
        for b in bytes {
            if b == 0x0A {
                if lastWasCR { lastWasCR = false; continue }  // the LF of a CRLF
                endLine(emit)
            } else if b == 0x0D {
                lastWasCR = true
                endLine(emit)
            } else {
                lastWasCR = false
                line.append(b)
            }
        }
    }

    /// Flushes an event left without its final blank line when the stream ends. The
    /// spec discards it; providers that end without one (some do) are better served by
    /// keeping it, so the caller decides.
    mutating func finish() -> SSEEvent? {
        if !line.isEmpty { processLine() }
        line.removeAll(keepingCapacity: true)
        return dispatch()
    }

    private mutating func endLine(_ emit: (SSEEvent) -> Void) {
        if line.isEmpty {
            if let e = dispatch() { emit(e) }
        } else {
            processLine()
            line.removeAll(keepingCapacity: true)
        }
    }

    private mutating func processLine() {
        var start = 0
        if !sawFirstLine {
            sawFirstLine = true
            if line.count >= 3, line[0] == 0xEF, line[1] == 0xBB, line[2] == 0xBF { start = 3 }
        }
        guard start < line.count else { return }
        if line[start] == UInt8(ascii: ":") { return }  // comment
        var colon = start
        while colon < line.count, line[colon] != UInt8(ascii: ":") { colon += 1 }
        let field = line[start..<colon]
        var valueStart = colon + 1
        if valueStart < line.count, line[valueStart] == 0x20 { valueStart += 1 }
        let value = colon < line.count ? line[min(valueStart, line.count)...] : line[line.count...]

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

    private mutating func dispatch() -> SSEEvent? {
        defer {
            data.removeAll(keepingCapacity: true)
            hasData = false
            event = nil
            retry = nil
        }
        guard hasData else { return nil }
        // `id` persists across events (the last event ID), as the spec says.
        return SSEEvent(event: event, data: String(decoding: data, as: UTF8.self), id: id, retry: retry)
    }
}
