import Foundation

/// A strict JSON cursor for hot paths: reads the few values a caller wants straight from
/// the bytes and skips the rest, validating everything it passes.
///
/// It is meant to sit in front of `JSONDecoder`, not to replace it: it throws on anything
/// it does not handle itself (escaped keys, fractional numbers where an integer is read,
/// lone surrogates, deep nesting), and the caller then decodes the same bytes the slow,
/// complete way. So it only has to be right when it succeeds, and it never accepts input
/// `JSONDecoder` would reject.
public struct JSONReader {
    public struct Unsupported: Error {}

    let bytes: UnsafeRawBufferPointer
    var i = 0
    /// Nesting allowed inside skipped values.
    static let maxDepth = 64

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    @inline(__always) mutating func skipSpace() {
        while i < bytes.count {
            let b = bytes[i]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            i += 1
        }
    }

    /// The next significant byte, not consumed.
    @inline(__always) mutating func peek() throws(Unsupported) -> UInt8 {
        skipSpace()
        guard i < bytes.count else { throw Unsupported() }
        return bytes[i]
    }

    @inline(__always) mutating func expect(_ byte: UInt8) throws(Unsupported) {
        guard try peek() == byte else { throw Unsupported() }
        i += 1
    }

    /// Consumes `null` if it comes next.
    public mutating func readNull() throws(Unsupported) -> Bool {
        guard try peek() == UInt8(ascii: "n") else { return false }
        try literal("null")
        return true
    }

    mutating func literal(_ text: StaticString) throws(Unsupported) {
        let n = text.utf8CodeUnitCount
        guard i + n <= bytes.count else { throw Unsupported() }
        let start = text.utf8Start
        for k in 0..<n where bytes[i + k] != start[k] { throw Unsupported() }
        i += n
    }

    /// Ends the document: only whitespace may follow.
    public mutating func end() throws(Unsupported) {
        skipSpace()
        guard i == bytes.count else { throw Unsupported() }
    }

    // MARK: Objects and arrays

    /// Reads `{`, then each key in turn (call `nextKey` until it returns nil).
    public mutating func beginObject() throws(Unsupported) { try expect(UInt8(ascii: "{")) }

    /// The next key of the object (its raw bytes; keys with escapes are unsupported), or
    /// nil at the closing brace. `first` is true for the first call on an object.
    public mutating func nextKey(first: inout Bool) throws(Unsupported) -> UnsafeRawBufferPointer? {
        guard try atNextKey(first: &first) else { return nil }
        let (range, plain) = try stringRange(validateUTF8: true)
        guard plain else { throw Unsupported() }
        try expect(UInt8(ascii: ":"))
        return UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// Moves past the comma before the next key (none before the first) and stops at its
    /// opening quote; false, with the closing brace consumed, at the end of the object.
    mutating func atNextKey(first: inout Bool) throws(Unsupported) -> Bool {
        var b = try peek()
        if b == UInt8(ascii: "}") {
            i += 1
            return false
        }
        if first {
            first = false
        } else {
            guard b == UInt8(ascii: ",") else { throw Unsupported() }
            i += 1
            b = try peek()
        }
        guard b == UInt8(ascii: "\"") else { throw Unsupported() }
        return true
    }

    public mutating func beginArray() throws(Unsupported) { try expect(UInt8(ascii: "[")) }

    /// Whether another element follows (false at the closing bracket).
    public mutating func nextElement(first: inout Bool) throws(Unsupported) -> Bool {
        let b = try peek()
        if b == UInt8(ascii: "]") {
            i += 1
            return false
        }
        if first {
            first = false
        } else {
            guard b == UInt8(ascii: ",") else { throw Unsupported() }
            i += 1
        }
        return true
    }

    // MARK: Scalars

    /// A string, or nil for `null`. `reusing` is returned, unallocated, when the text is
    /// the same (a chunk's id and model repeat on every chunk).
    public mutating func readOptionalString(reusing previous: String? = nil) throws(Unsupported) -> String? {
        if try readNull() { return nil }
        return try readString(reusing: previous)
    }

    public mutating func readString(reusing previous: String? = nil) throws(Unsupported) -> String {
        guard try peek() == UInt8(ascii: "\"") else { throw Unsupported() }
        let (range, plain) = try stringRange()
        let raw = UnsafeRawBufferPointer(rebasing: bytes[range])
        if plain {
            if var previous, previous.utf8.count == raw.count {
                let same = previous.withUTF8 { $0.elementsEqual(raw) }
                if same { return previous }
            }
            return try Self.validated(raw)
        }
        return try unescape(raw)
    }

    /// An integer, or nil for `null`. Fractions and exponents are unsupported.
    public mutating func readOptionalInt() throws(Unsupported) -> Int? {
        if try readNull() { return nil }
        return try readInt()
    }

    public mutating func readInt() throws(Unsupported) -> Int {
        _ = try peek()
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        let digitsStart = i
        var value = 0
        while i < bytes.count, bytes[i] &- 0x30 < 10 {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int(bytes[i] &- 0x30))
            guard !o1, !o2 else { throw Unsupported() }
            value = a
            i += 1
        }
        let digits = i - digitsStart
        guard digits > 0, !(digits > 1 && bytes[digitsStart] == 0x30) else { throw Unsupported() }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") || bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            throw Unsupported()
        }
        return negative ? -value : value
    }

    /// The raw bytes of the next value, validated and skipped (to decode it another way).
    public mutating func rawValue() throws(Unsupported) -> UnsafeRawBufferPointer {
        _ = try peek()
        let start = i
        try skipValue()
        return UnsafeRawBufferPointer(rebasing: bytes[start..<i])
    }

    /// Skips one value of any kind, validating it.
    public mutating func skipValue(depth: Int = 0) throws(Unsupported) {
        guard depth < Self.maxDepth else { throw Unsupported() }
        switch try peek() {
        case UInt8(ascii: "\""):
            _ = try stringRange(validateUTF8: true)
        case UInt8(ascii: "{"):
            i += 1
            var first = true
            while try nextKeyForSkip(first: &first) {
                try skipValue(depth: depth + 1)
            }
        case UInt8(ascii: "["):
            i += 1
            var first = true
            while try nextElement(first: &first) {
                try skipValue(depth: depth + 1)
            }
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        default: try skipNumber()
        }
    }

    /// Like `nextKey`, but any key (escaped ones too) is fine: it is only skipped.
    mutating func nextKeyForSkip(first: inout Bool) throws(Unsupported) -> Bool {
        guard try atNextKey(first: &first) else { return false }
        _ = try stringRange(validateUTF8: true)
        try expect(UInt8(ascii: ":"))
        return true
    }

    mutating func skipNumber() throws(Unsupported) {
        let n = bytes.count
        @inline(__always) func digits() -> Int {
            let s = i
            while i < n, bytes[i] &- 0x30 < 10 { i += 1 }
            return i - s
        }
        if i < n, bytes[i] == UInt8(ascii: "-") { i += 1 }
        let intStart = i
        let intDigits = digits()
        guard intDigits > 0, !(intDigits > 1 && bytes[intStart] == 0x30) else { throw Unsupported() }
        if i < n, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw Unsupported() }
        }
        if i < n, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < n, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw Unsupported() }
        }
    }

    // MARK: Strings

    /// Consumes a string; returns the range of its content and whether it has no
    /// escapes. Control characters are rejected, as JSON requires; `validateUTF8` also
    /// checks the escapes and the text (for strings that are skipped, not read).
    mutating func stringRange(validateUTF8: Bool = false) throws(Unsupported) -> (Range<Int>, plain: Bool) {
        i += 1  // the opening quote
        let start = i
        var plain = true
        var ascii = true
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b == UInt8(ascii: "\"") {
                let range = start..<i
                i += 1
                if validateUTF8 {
                    let raw = UnsafeRawBufferPointer(rebasing: bytes[range])
                    if !plain {
                        _ = try unescape(raw)  // checks the escapes and the text
                    } else if !ascii, String(validating: raw, as: UTF8.self) == nil {
                        throw Unsupported()
                    }
                }
                return (range, plain)
            }
            if b == UInt8(ascii: "\\") {
                plain = false
                i += 2
                continue
            }
            if b < 0x20 { throw Unsupported() }
            if b >= 0x80 { ascii = false }
            i += 1
        }
        throw Unsupported()
    }

    static func validated(_ raw: UnsafeRawBufferPointer) throws(Unsupported) -> String {
        guard let s = String(validating: raw, as: UTF8.self) else { throw Unsupported() }
        return s
    }

    /// The text of a string with escapes.
    func unescape(_ raw: UnsafeRawBufferPointer) throws(Unsupported) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var k = 0
        let n = raw.count
        func hex4(_ at: Int) throws(Unsupported) -> UInt32 {
            guard at + 4 <= n else { throw Unsupported() }
            var v: UInt32 = 0
            for j in at..<(at + 4) {
                let c = raw[j]
                let d: UInt8
                switch c {
                case 0x30...0x39: d = c - 0x30
                case 0x41...0x46: d = c - 0x41 + 10
                case 0x61...0x66: d = c - 0x61 + 10
                default: throw Unsupported()
                }
                v = v << 4 | UInt32(d)
            }
            return v
        }
        while k < n {
            let b = raw[k]
            guard b == UInt8(ascii: "\\") else {
                out.append(b)
                k += 1
                continue
            }
            guard k + 1 < n else { throw Unsupported() }
            let e = raw[k + 1]
            k += 2
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(k)
                k += 4
                if (0xD800..<0xDC00).contains(scalar) {
                    // A high surrogate must be followed by an escaped low one.
                    guard k + 6 <= n, raw[k] == UInt8(ascii: "\\"), raw[k + 1] == UInt8(ascii: "u") else { throw Unsupported() }
                    let low = try hex4(k + 2)
                    guard (0xDC00..<0xE000).contains(low) else { throw Unsupported() }
                    k += 6
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00..<0xE000).contains(scalar) {
                    throw Unsupported()
                }
                guard let u = Unicode.Scalar(scalar) else { throw Unsupported() }
                out.append(contentsOf: UTF8.encode(u)!)
            default:
                throw Unsupported()
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw Unsupported() }
        return s
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes spell `text` (a JSON key, say).
    @inline(__always) public func equals(_ text: StaticString) -> Bool {
        guard count == text.utf8CodeUnitCount else { return false }
        let wanted = text.utf8Start
        for k in 0..<count where self[k] != wanted[k] { return false }
        return true
    }
}

extension JSONReader {
    /// Nesting allowed in a `JSONValue` (JSONDecoder's own limit).
    static let maxValueDepth = 512

    /// Any JSON value, read directly (no Codable round of try-this-type-then-that).
    public mutating func value(depth: Int = 0) throws(Unsupported) -> JSONValue {
        guard depth < Self.maxValueDepth else { throw Unsupported() }
        switch try peek() {
        case UInt8(ascii: "\""):
            return .string(try readString())
        case UInt8(ascii: "{"):
            i += 1
            var object: [String: JSONValue] = [:]
            var first = true
            while try atNextKey(first: &first) {
                let key = try readString()
                try expect(UInt8(ascii: ":"))
                // A repeated key: which one JSONDecoder keeps is its business.
                guard object.updateValue(try value(depth: depth + 1), forKey: key) == nil else { throw Unsupported() }
            }
            return .object(object)
        case UInt8(ascii: "["):
            i += 1
            var array: [JSONValue] = []
            var first = true
            while try nextElement(first: &first) {
                array.append(try value(depth: depth + 1))
            }
            return .array(array)
        case UInt8(ascii: "t"):
            try literal("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try literal("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try literal("null")
            return .null
        default:
            let start = i
            try skipNumber()
            let text = UnsafeRawBufferPointer(rebasing: bytes[start..<i])
            // Exponents (rare, with edge cases JSONDecoder has its own view of) go to it.
            guard !text.contains(UInt8(ascii: "e")), !text.contains(UInt8(ascii: "E")),
                  let n = Self.double(text), n.isFinite
            else { throw Unsupported() }
            return .number(n)
        }
    }

    /// A JSON number's text as a Double: small integers exactly without parsing text,
    /// the rest by the standard library's correctly rounded parser.
    static func double(_ text: UnsafeRawBufferPointer) -> Double? {
        if text.count <= 15 {
            var v = 0
            var negative = false
            var plain = true
            for (k, b) in text.enumerated() {
                if k == 0, b == UInt8(ascii: "-") {
                    negative = true
                } else if b &- 0x30 < 10 {
                    v = v * 10 + Int(b &- 0x30)
                } else {
                    plain = false
                    break
                }
            }
            if plain { return negative ? (v == 0 ? -0.0 : -Double(v)) : Double(v) }
        }
        return Double(String(decoding: text, as: UTF8.self))
    }
}

extension JSONValue {
    /// Parses JSON text. Fast for everything ordinary; what the direct reader declines
    /// (see `JSONReader`) is decoded by JSONDecoder, which also words the errors.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSONValue {
        let fast: JSONValue?? = bytes.withContiguousStorageIfAvailable { buffer in
            var reader = JSONReader(UnsafeRawBufferPointer(buffer))
            guard let value = try? reader.value(), (try? reader.end()) != nil else { return nil }
            return value
        }
        if let fast = fast ?? nil { return fast }
        return try JSON.decoder.decode(JSONValue.self, from: Data(bytes))
    }
}
