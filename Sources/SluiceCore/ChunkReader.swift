/// Reads a `chat.completion.chunk` straight from its bytes: the per-chunk path of every
/// OpenAI-format stream. Gives the same value `JSONDecoder` would, or nil when the chunk
/// holds something it leaves to `JSONDecoder` (see `JSONReader`); the caller then decodes
/// it that way.
public enum ChunkReader {
    /// `previous` lends its strings: a stream repeats its id and model on every chunk,
    /// and an equal string is reused rather than allocated again.
    public static func read(_ bytes: [UInt8], previous: ChatCompletionChunk? = nil) -> ChatCompletionChunk? {
        bytes.withUnsafeBytes { buffer in
            var reader = JSONReader(buffer)
            return try? reader.chunk(previous: previous)
        }
    }
}

extension JSONReader {
    /// Throws on a key given twice: which one `JSONDecoder` keeps is its business.
    @inline(__always) static func mark(_ seen: inout UInt32, _ bit: UInt32) throws(Unsupported) {
        guard seen & bit == 0 else { throw Unsupported() }
        seen |= bit
    }

    mutating func chunk(previous: ChatCompletionChunk?) throws(Unsupported) -> ChatCompletionChunk {
        var id = "", object = "chat.completion.chunk", created = 0, model = ""
        var fingerprint: String?
        var choices: [ChunkChoice] = []
        var usage: Usage?
        var seen: UInt32 = 0
        try beginObject()
        var first = true
        while let key = try nextKey(first: &first) {
            if key.equals("id") {
                try Self.mark(&seen, 1)
                id = try readOptionalString(reusing: previous?.id) ?? ""
            } else if key.equals("object") {
                try Self.mark(&seen, 2)
                object = try readOptionalString(reusing: previous?.object) ?? "chat.completion.chunk"
            } else if key.equals("created") {
                try Self.mark(&seen, 4)
                created = try readOptionalInt() ?? 0
            } else if key.equals("model") {
                try Self.mark(&seen, 8)
                model = try readOptionalString(reusing: previous?.model) ?? ""
            } else if key.equals("system_fingerprint") {
                try Self.mark(&seen, 16)
                fingerprint = try readOptionalString(reusing: previous?.systemFingerprint)
            } else if key.equals("choices") {
                try Self.mark(&seen, 32)
                if try !readNull() {
                    try beginArray()
                    var firstChoice = true
                    while try nextElement(first: &firstChoice) {
                        choices.append(try choice())
                    }
                }
            } else if key.equals("usage") {
                try Self.mark(&seen, 64)
                usage = try readNull() ? nil : try self.usage()
            } else {
                try skipValue()
            }
        }
        try end()
        var chunk = ChatCompletionChunk(
            id: id, created: created, model: model, systemFingerprint: fingerprint, choices: choices, usage: usage)
        chunk.object = object
        return chunk
    }

    mutating func choice() throws(Unsupported) -> ChunkChoice {
        var index = 0
        var delta: ChunkDelta?
        var finishReason: String?
        var seen: UInt32 = 0
        try beginObject()
        var first = true
        while let key = try nextKey(first: &first) {
            if key.equals("index") {
                try Self.mark(&seen, 1)
                index = try readOptionalInt() ?? 0
            } else if key.equals("delta") {
                try Self.mark(&seen, 2)
                delta = try readNull() ? nil : try self.delta()
            } else if key.equals("finish_reason") {
                try Self.mark(&seen, 4)
                finishReason = try readOptionalString()
            } else {
                try skipValue()
            }
        }
        return ChunkChoice(index: index, delta: delta, finishReason: finishReason)
    }

    mutating func delta() throws(Unsupported) -> ChunkDelta {
        var delta = ChunkDelta()
        var seen: UInt32 = 0
        try beginObject()
        var first = true
        while let key = try nextKey(first: &first) {
            if key.equals("role") {
                try Self.mark(&seen, 1)
                delta.role = try readOptionalString(reusing: "assistant")
            } else if key.equals("content") {
                try Self.mark(&seen, 2)
                delta.content = try readOptionalString()
            } else if key.equals("refusal") {
                try Self.mark(&seen, 4)
                delta.refusal = try readOptionalString()
            } else if key.equals("tool_calls") {
                try Self.mark(&seen, 8)
                if try !readNull() {
                    var calls: [ToolCallDelta] = []
                    try beginArray()
                    var firstCall = true
                    while try nextElement(first: &firstCall) {
                        calls.append(try toolCall())
                    }
                    delta.toolCalls = calls
                }
            } else {
                try skipValue()
            }
        }
        return delta
    }

    mutating func toolCall() throws(Unsupported) -> ToolCallDelta {
        var call = ToolCallDelta(index: nil)
        var seen: UInt32 = 0
        try beginObject()
        var first = true
        while let key = try nextKey(first: &first) {
            if key.equals("index") {
                try Self.mark(&seen, 1)
                call.index = try readOptionalInt()
            } else if key.equals("id") {
                try Self.mark(&seen, 2)
                call.id = try readOptionalString()
            } else if key.equals("type") {
                try Self.mark(&seen, 4)
                call.type = try readOptionalString(reusing: "function")
            } else if key.equals("function") {
                try Self.mark(&seen, 8)
                if try !readNull() {
                    var function = ToolCallDelta.Function()
                    var seenInFunction: UInt32 = 0
                    try beginObject()
                    var firstKey = true
                    while let key = try nextKey(first: &firstKey) {
                        if key.equals("name") {
                            try Self.mark(&seenInFunction, 1)
                            function.name = try readOptionalString()
                        } else if key.equals("arguments") {
                            try Self.mark(&seenInFunction, 2)
                            function.arguments = try readOptionalString()
                        } else {
                            try skipValue()
                        }
                    }
                    call.function = function
                }
            } else {
                try skipValue()
            }
        }
        return call
    }

    mutating func usage() throws(Unsupported) -> Usage {
        var prompt: Int?, completion: Int?, total: Int?
        var promptDetails: JSONValue?, completionDetails: JSONValue?
        var seen: UInt32 = 0
        try beginObject()
        var first = true
        while let key = try nextKey(first: &first) {
            if key.equals("prompt_tokens") {
                try Self.mark(&seen, 1)
                prompt = try readOptionalInt()
            } else if key.equals("completion_tokens") {
                try Self.mark(&seen, 2)
                completion = try readOptionalInt()
            } else if key.equals("total_tokens") {
                try Self.mark(&seen, 4)
                total = try readOptionalInt()
            } else if key.equals("prompt_tokens_details") {
                try Self.mark(&seen, 8)
                promptDetails = try details()
            } else if key.equals("completion_tokens_details") {
                try Self.mark(&seen, 16)
                completionDetails = try details()
            } else {
                try skipValue()
            }
        }
        let p = prompt ?? 0, c = completion ?? 0
        return Usage(promptTokens: p, completionTokens: c, totalTokens: total ?? p.adding(saturating: c),
                     promptTokensDetails: promptDetails, completionTokensDetails: completionDetails)
    }

    /// Token details: any JSON, decoded the complete way (once per stream, in its last chunk).
    mutating func details() throws(Unsupported) -> JSONValue? {
        if try readNull() { return nil }
        let raw = try rawValue()
        guard let value = try? JSON.decode(JSONValue.self, from: raw) else { throw Unsupported() }
        return value
    }
}
