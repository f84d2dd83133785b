/// Masks secret-looking values in bytes that may not be JSON at all: a message kept for
/// inspection (the DLQ) must not keep a key in clear because it was too broken to parse.
///
/// It reads the bytes as words (runs of letters, digits, `_` and `-`) and masks, with
/// `***`:
/// - the value after a key named like a secret (`api_key`, `apiKey`, `x-api-key`,
///   `authorization`, `password`, `secret`, `token`, `client_secret`, `access_token`,
///   …: any name ending so, case, `_` and `-` aside), at any depth: the key may be
///   quoted or not, followed by `:` or `=`, and its value a quoted string (also one
///   escaped inside another string, `\"…\"`, or never closed) or a bare word;
/// - a word that starts with `sk-` (OpenAI's and Anthropic's `sk-ant-…` keys);
/// - the token after a `Bearer` or `Basic` word.
///
/// Pure and total: any bytes give bytes, never a trap. Each byte is read a bounded
/// number of times (a quoted value's scan stops at the next opener of its kind, a bare
/// one at the next `=`), so the time is linear in the input.
public enum SecretMasker {
    public static let mask: [UInt8] = Array("***".utf8)

    /// Key names (lowercased, without `_` and `-`) whose value is a secret, matched as
    /// the end of the name: `openai_api_key` and `x-api-key` end in `apikey`.
    static let secretKeySuffixes: [[UInt8]] = [
        "apikey", "authorization", "password", "passwd", "secret", "secretkey", "token", "accesskey", "privatekey",
        "credential", "credentials",
    ].map { Array($0.utf8) }

    /// Words whose following token is a credential.
    static let schemes: [[UInt8]] = ["bearer", "basic"].map { Array($0.utf8) }

    /// The shortest `sk-` word taken for a key (`sk-` plus this many characters).
    static let minimumKeyTail = 6

    /// How far past a key name its `:` or `=` may be (quotes, backslashes, spaces).
    static let separatorReach = 8

    public static func masked(_ input: [UInt8]) -> [UInt8] {
        // Every word is looked at, even one inside a value already masked: a quote that
        // pairs differently than it seems (an escape in broken input) then hides nothing.
        var ranges: [Range<Int>] = []
        var i = 0
        let n = input.count
        while i < n {
            guard isWordByte(input[i]) else {
                i += 1
                continue
            }
            var end = i + 1
            while end < n, isWordByte(input[end]) { end += 1 }
            let word = input[i..<end]
            if isAPIKey(word) {
                ranges.append(i + 3..<end)
            } else if isScheme(word), let token = schemeToken(input, after: end) {
                ranges.append(token)
            } else if isSecretKey(word), let valueStart = separator(input, after: end),
                      let value = valueRange(input, at: valueStart) {
                ranges.append(value)
                // Masked to the end: nothing after it can show.
                if value.upperBound == n { break }
            }
            i = end
        }
        guard !ranges.isEmpty else { return input }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var cursor = 0
        var index = 0
        while index < ranges.count {
            var merged = ranges[index]
            index += 1
            while index < ranges.count, ranges[index].lowerBound <= merged.upperBound {
                merged = merged.lowerBound..<max(merged.upperBound, ranges[index].upperBound)
                index += 1
            }
            if merged.lowerBound >= cursor {
                out.append(contentsOf: input[cursor..<merged.lowerBound])
                out.append(contentsOf: mask)
                cursor = merged.upperBound
            } else if merged.upperBound > cursor {
                cursor = merged.upperBound
            }
        }
        out.append(contentsOf: input[cursor...])
        return out
    }

    // MARK: Words

    static func isWordByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F || b == 0x2D
    }

    static func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b + 0x20 : b }

    static func isAPIKey(_ word: ArraySlice<UInt8>) -> Bool {
        word.count >= 3 + minimumKeyTail && word.starts(with: "sk-".utf8)
    }

    static func isScheme(_ word: ArraySlice<UInt8>) -> Bool {
        schemes.contains { $0.count == word.count && zip($0, word).allSatisfy { $0 == lower($1) } }
    }

    static func isSecretKey(_ word: ArraySlice<UInt8>) -> Bool {
        let name = word.lazy.filter { $0 != 0x5F && $0 != 0x2D }.map(lower)
        let normalized = Array(name)
        return secretKeySuffixes.contains { suffix in
            normalized.count >= suffix.count && normalized.suffix(suffix.count).elementsEqual(suffix)
        }
    }

    // MARK: Values

    /// After a `Bearer`/`Basic` word: the token that follows its spaces (base64 and
    /// URL-safe characters), if there is one.
    static func schemeToken(_ input: [UInt8], after start: Int) -> Range<Int>? {
        var i = start
        while i < input.count, input[i] == 0x20 || input[i] == 0x09 { i += 1 }
        guard i > start else { return nil }
        let tokenStart = i
        i = tokenEnd(input, from: i)
        return i > tokenStart ? tokenStart..<i : nil
    }

    /// A credential's characters (base64, URL-safe, JWT dots), then its `=` padding.
    /// An `=` only ends a token, so `a=b=c` is three tokens, not one: no token runs over
    /// the next key's `=`, and each byte is read a bounded number of times.
    static func tokenEnd(_ input: [UInt8], from start: Int) -> Int {
        var i = start
        while i < input.count, isTokenByte(input[i]) { i += 1 }
        while i < input.count, input[i] == 0x3D { i += 1 }
        return i
    }

    static func isTokenByte(_ b: UInt8) -> Bool {
        isWordByte(b) || b == 0x2E || b == 0x2B || b == 0x2F || b == 0x7E
    }

    /// After a key name: where its value starts, if a `:` or `=` follows within reach
    /// (past closing quotes, backslashes and spaces) and spaces after it.
    static func separator(_ input: [UInt8], after start: Int) -> Int? {
        var i = start
        let reach = min(input.count, start + separatorReach)
        while i < reach, input[i] == 0x22 || input[i] == 0x27 || input[i] == 0x5C || input[i] == 0x20 || input[i] == 0x09 {
            i += 1
        }
        guard i < input.count, input[i] == 0x3A || input[i] == 0x3D else { return nil }
        i += 1
        while i < input.count, input[i] == 0x20 || input[i] == 0x09 || input[i] == 0x0A || input[i] == 0x0D { i += 1 }
        return i
    }

    /// The bytes to mask of the value at `start`, its quotes left out; nil when there is
    /// nothing to mask there (an object or array, whose contents the scan reads anyway;
    /// `null`, `true`, `false`).
    static func valueRange(_ input: [UInt8], at start: Int) -> Range<Int>? {
        let n = input.count
        guard start < n else { return nil }
        let b = input[start]
        // A string escaped inside another string: \"value\" ends at the next \".
        if b == 0x5C, start + 1 < n, input[start + 1] == 0x22 {
            var i = start + 2
            while i + 1 < n, !(input[i] == 0x5C && input[i + 1] == 0x22) { i += 1 }
            return start + 2..<(i + 1 < n ? i : n)
        }
        // A quoted string: ends at the same quote, unescaped; never closed, at the end.
        if b == 0x22 || b == 0x27 {
            var i = start + 1
            while i < n, input[i] != b { i += input[i] == 0x5C ? 2 : 1 }
            return start + 1..<min(i, n)
        }
        guard isTokenByte(b) else { return nil }
        let end = tokenEnd(input, from: start)
        let word = input[start..<end]
        if literals.contains(where: { $0.elementsEqual(word) }) { return nil }
        // `Authorization: Bearer abc`: the token after the scheme.
        if isScheme(word), let token = schemeToken(input, after: end) { return token }
        return start..<end
    }

    static let literals: [[UInt8]] = ["null", "true", "false"].map { Array($0.utf8) }
}
