import SluiceCore
import SluiceHTTPClient

/// Google's Gemini API: `POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse`
/// (`:generateContent` when not streaming; a base URL that already ends in `/v1beta` or
/// `/v1` is used as it is), key in the `x-goog-api-key` header, never in the URL.
///
/// Requests are translated from OpenAI's chat format: `assistant` becomes `model`, system
/// messages `systemInstruction`, tool calls and results `functionCall` and
/// `functionResponse` parts, `tools` `functionDeclarations`, and the hyperparameters
/// `generationConfig`.
///
/// Each SSE `data:` is a whole `GenerateContentResponse`; there is no `[DONE]`: the stream
/// has ended properly once every candidate has a `finishReason`. `usageMetadata` repeats
/// on every event as a running total, so the last one wins. Function calls arrive whole
/// and become one tool-call delta each, with ids `call_0`, `call_1`, … A prompt blocked
/// by `promptFeedback.blockReason` is a failure that is not retried.
public struct GeminiWireFormat: WireFormat {
    public init() {}

    public func makeRequest(_ call: ProviderCall) throws -> CurlRequest {
        let body = try call.passthroughBody ?? .object(Self.requestBody(call))
        var headers: HTTPHeaders = ["content-type": "application/json"]
        headers["accept"] = call.stream ? "text/event-stream" : "application/json"
        if let key = call.apiKey { headers["x-goog-api-key"] = key.value }
        let base = call.provider.trimmedBaseURL
        let root = base.hasSuffix("/v1beta") || base.hasSuffix("/v1") ? base : base + "/v1beta"
        let method = call.stream ? ":streamGenerateContent?alt=sse" : ":generateContent"
        return CurlRequest(
            method: "POST", url: "\(root)/models/\(try Self.pathModel(call.model))\(method)", headers: headers,
            body: try JSON.encode(body), connectTimeout: call.connectTimeout, idleTimeout: call.idleTimeout,
            totalTimeout: call.totalTimeout, caFile: call.provider.caFile)
    }

    public func makeStreamDecoder(_ call: ProviderCall) -> any StreamDecoder {
        GeminiStreamDecoder(provider: call.provider.name, model: call.model, candidates: Self.candidateCount(call.parameters))
    }

    public func decodeCompletion(_ body: [UInt8], call: ProviderCall) throws -> ChatCompletion {
        let response: Response
        do {
            response = try JSON.decode(Response.self, from: body)
        } catch {
            throw ProviderError(.protocolError, "\(call.provider.name)'s response is not a GenerateContentResponse", retryable: false)
        }
        try Self.check(response, provider: call.provider.name)
        var nextCall = 0
        let choices = (response.candidates ?? []).map { candidate in
            var text = ""
            var tools: [ToolCall] = []
            for part in candidate.content?.parts ?? [] {
                if let t = part.text, part.thought != true { text += t }
                if let f = part.functionCall {
                    tools.append(ToolCall(id: "call_\(nextCall)", function: .init(name: f.name, arguments: WireSupport.jsonText(f.args ?? .object([:])))))
                    nextCall += 1
                }
            }
            return CompletionChoice(
                index: candidate.index ?? 0,
                message: AssistantMessage(content: text.isEmpty && !tools.isEmpty ? nil : text, toolCalls: tools.isEmpty ? nil : tools),
                finishReason: Self.finishReason(candidate.finishReason, calledTools: !tools.isEmpty))
        }
        return try WireSupport.completion(
            id: response.responseId ?? "", created: WireSupport.now(), model: response.modelVersion ?? call.model,
            choices: choices, usage: response.usageMetadata.map(Self.usage))
    }

    /// `{"error": {"code", "message", "status"}}`, also inside the array that
    /// `streamGenerateContent` without `alt=sse` answers with.
    public func errorMessage(_ body: [UInt8]) -> String? {
        guard var v = try? JSON.decode(JSONValue.self, from: body) else { return nil }
        if let first = v.arrayValue?.first { v = first }
        if let message = v["error"]?["message"]?.stringValue {
            return v["error"]?["status"]?.stringValue.map { "\($0): \(message)" } ?? message
        }
        return WireSupport.genericErrorMessage(body)
    }

    // MARK: Reading responses

    /// Throws for an error object or a blocked prompt.
    static func check(_ response: Response, provider: String) throws {
        if let error = response.error {
            let code = error.code
            let retryable = code.map { $0 == 429 || $0 == 408 || $0 >= 500 } ?? false
            let text = [error.status, error.message].compactMap { $0 }.joined(separator: ": ")
            throw ProviderError(.http, "\(provider) sent an error: \(text.isEmpty ? "no message" : text)", status: code, retryable: retryable)
        }
        if let reason = response.promptFeedback?.blockReason {
            let detail = response.promptFeedback?.blockReasonMessage.map { ": \($0)" } ?? ""
            throw ProviderError(
                .http,
                "\(provider) blocked the prompt (blockReason \(reason))\(detail); change the prompt or the request's safetySettings",
                retryable: false)
        }
    }

    /// Gemini's `finishReason` as an OpenAI `finish_reason`; nil while not finished.
    static func finishReason(_ reason: String?, calledTools: Bool) -> String? {
        switch reason {
        case nil, "FINISH_REASON_UNSPECIFIED": nil
        case "STOP": calledTools ? "tool_calls" : "stop"
        case "MAX_TOKENS": "length"
        case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE",
             "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION":
            "content_filter"
        default: calledTools ? "tool_calls" : "stop"  // OTHER, MALFORMED_FUNCTION_CALL, newer reasons
        }
    }

    /// OpenAI usage from `usageMetadata`: tool-use prompt tokens count as input, thinking
    /// tokens as output (as OpenAI counts reasoning tokens).
    static func usage(_ m: UsageMetadata) -> Usage {
        let prompt = (m.promptTokenCount ?? 0) + (m.toolUsePromptTokenCount ?? 0)
        let completion = (m.candidatesTokenCount ?? 0) + (m.thoughtsTokenCount ?? 0)
        return Usage(
            promptTokens: prompt, completionTokens: completion,
            promptTokensDetails: m.cachedContentTokenCount.map { ["cached_tokens": .number(Double($0))] },
            completionTokensDetails: m.thoughtsTokenCount.map { ["reasoning_tokens": .number(Double($0))] })
    }

    static func candidateCount(_ parameters: [String: JSONValue]) -> Int {
        max(1, parameters["n"]?.intValue ?? parameters["candidate_count"]?.intValue ?? 1)
    }

    /// The model as a path segment: without a `models/` prefix, percent-encoded, and
    /// refused if it could leave its segment.
    static func pathModel(_ model: String) throws -> String {
        try WireSupport.pathSegment(model.hasPrefix("models/") ? String(model.dropFirst(7)) : model, field: "model")
    }

    // MARK: Request translation

    static func requestBody(_ call: ProviderCall) throws -> [String: JSONValue] {
        var system: [JSONValue] = []
        var contents: [(role: String, parts: [JSONValue])] = []
        var toolNames: [String: String] = [:]  // tool_call_id → function name
        func append(_ role: String, _ parts: [JSONValue]) {
            guard !parts.isEmpty else { return }
            if let last = contents.last, last.role == role {
                contents[contents.count - 1].parts += parts
            } else {
                contents.append((role, parts))
            }
        }

        for (i, message) in call.messages.enumerated() {
            switch message["role"]?.stringValue ?? "user" {
            case "system", "developer":
                let text = WireSupport.text(of: message["content"])
                if !text.isEmpty { system.append(["text": .string(text)]) }
            case "assistant":
                var parts = Self.parts(message["content"])
                for toolCall in message["tool_calls"]?.arrayValue ?? [] {
                    let name = toolCall["function"]?["name"]?.stringValue ?? ""
                    if let id = toolCall["id"]?.stringValue { toolNames[id] = name }
                    let args = try WireSupport.arguments(toolCall["function"]?["arguments"]?.stringValue, tool: name, message: i)
                    parts.append(["functionCall": ["name": .string(name), "args": args]])
                }
                append("model", parts)
            case "tool", "function":
                let name = message["tool_call_id"]?.stringValue.flatMap { toolNames[$0] } ?? message["name"]?.stringValue ?? ""
                let text = WireSupport.text(of: message["content"])
                // `response` must be an object: a JSON object result as it is, anything
                // else under "result".
                let parsed = try? JSON.decode(JSONValue.self, from: Array(text.utf8))
                let response: JSONValue = parsed?.objectValue != nil ? parsed! : ["result": parsed ?? .string(text)]
                append("user", [["functionResponse": ["name": .string(name), "response": response]]])
            default:
                var parts = Self.parts(message["content"])
                if parts.isEmpty { parts = [["text": ""]] }
                append("user", parts)
            }
        }

        var body: [String: JSONValue] = [
            "contents": .array(contents.map { ["role": .string($0.role), "parts": .array($0.parts)] }),
        ]
        if !system.isEmpty { body["systemInstruction"] = ["parts": .array(system)] }

        let p = call.parameters
        var config: [String: JSONValue] = p["generationConfig"]?.objectValue ?? [:]
        let renames = [
            "temperature": "temperature", "top_p": "topP", "top_k": "topK", "n": "candidateCount",
            "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty", "seed": "seed",
        ]
        for (from, to) in renames {
            if let v = p[from], !v.isNull { config[to] = v }
        }
        if let max = WireSupport.maxTokens(p) { config["maxOutputTokens"] = .number(Double(max)) }
        if let stop = WireSupport.stopSequences(p["stop"]) { config["stopSequences"] = .array(stop) }
        if let type = p["response_format"]?["type"]?.stringValue, type == "json_object" || type == "json_schema" {
            config["responseMimeType"] = "application/json"
        }
        if !config.isEmpty { body["generationConfig"] = .object(config) }
        if let safety = p["safetySettings"] ?? p["safety_settings"] { body["safetySettings"] = safety }

        let functions = try WireSupport.functions(p["tools"])
        if !functions.isEmpty {
            body["tools"] = [["functionDeclarations": .array(functions.map { f in
                var declaration: [String: JSONValue] = ["name": .string(f.name)]
                if let d = f.description { declaration["description"] = .string(d) }
                // Gemini rejects an object schema without properties: no parameters then.
                if let schema = f.parameters, schema["properties"]?.objectValue?.isEmpty == false {
                    declaration["parameters"] = sanitize(schema)
                }
                return .object(declaration)
            })]]
            var mode: [String: JSONValue]?
            switch WireSupport.toolChoice(p["tool_choice"]) {
            case .auto?: mode = ["mode": "AUTO"]
            case .none?: mode = ["mode": "NONE"]
            case .required?: mode = ["mode": "ANY"]
            case .function(let name)?: mode = ["mode": "ANY", "allowedFunctionNames": [.string(name)]]
            case nil: mode = nil
            }
            if let mode { body["toolConfig"] = ["functionCallingConfig": .object(mode)] }
        }
        return body
    }

    /// OpenAI content as Gemini parts: text, images as `inlineData` (data URLs) or
    /// `fileData` (other URLs).
    static func parts(_ content: JSONValue?) -> [JSONValue] {
        switch content {
        case .string(let s)?:
            return s.isEmpty ? [] : [["text": .string(s)]]
        case .array(let items)?:
            return items.compactMap { item -> JSONValue? in
                switch item["type"]?.stringValue {
                case "text":
                    let text = item["text"]?.stringValue ?? ""
                    return text.isEmpty ? nil : ["text": .string(text)]
                case "image_url":
                    let url = item["image_url"]?["url"]?.stringValue ?? item["image_url"]?.stringValue ?? ""
                    if let (mediaType, data) = WireSupport.dataURL(url) {
                        return ["inlineData": ["mimeType": .string(mediaType), "data": .string(data)]]
                    }
                    return ["fileData": ["fileUri": .string(url)]]
                case nil:
                    return item.objectValue == nil ? nil : item  // already a Gemini part (they have no "type")
                default:
                    return nil  // refusal, audio: nothing Gemini reads here
                }
            }
        default:
            return []
        }
    }

    /// A JSON Schema without the keywords Gemini's schema subset rejects.
    static func sanitize(_ schema: JSONValue) -> JSONValue {
        switch schema {
        case .object(let o):
            var out: [String: JSONValue] = [:]
            for (k, v) in o where !["$schema", "additionalProperties", "strict", "$id"].contains(k) {
                if k == "properties", let props = v.objectValue {
                    out[k] = .object(props.mapValues(sanitize))  // property names are not keywords
                } else {
                    out[k] = sanitize(v)
                }
            }
            return .object(out)
        case .array(let a):
            return .array(a.map(sanitize))
        default:
            return schema
        }
    }

    // MARK: Wire types

    struct FunctionCall: Decodable, Sendable {
        var name: String
        var args: JSONValue?
    }

    struct Part: Decodable, Sendable {
        var text: String?
        var thought: Bool?
        var functionCall: FunctionCall?
    }

    struct Content: Decodable, Sendable {
        var parts: [Part]?
    }

    struct Candidate: Decodable, Sendable {
        var content: Content?
        var finishReason: String?
        var index: Int?
    }

    struct PromptFeedback: Decodable, Sendable {
        var blockReason: String?
        var blockReasonMessage: String?
    }

    struct UsageMetadata: Decodable, Sendable, Equatable {
        var promptTokenCount: Int?
        var candidatesTokenCount: Int?
        var cachedContentTokenCount: Int?
        var thoughtsTokenCount: Int?
        var toolUsePromptTokenCount: Int?
    }

    struct APIError: Decodable, Sendable {
        var code: Int?
        var message: String?
        var status: String?
    }

    struct Response: Decodable, Sendable {
        var candidates: [Candidate]?
        var promptFeedback: PromptFeedback?
        var usageMetadata: UsageMetadata?
        var modelVersion: String?
        var responseId: String?
        var error: APIError?
    }
}

/// Reads one Gemini stream.
struct GeminiStreamDecoder: StreamDecoder {
    private let provider: String
    private var builder: ChunkBuilder
    private var identified = false
    private let expectedCandidates: Int
    private(set) var isComplete = false
    private var candidates: [Int: CandidateState] = [:]
    private var nextCallID = 0
    private var usage: GeminiWireFormat.UsageMetadata?
    private var publishedUsage: GeminiWireFormat.UsageMetadata?

    private struct CandidateState {
        var roleSent = false
        var tools = 0
        var finished = false
    }

    init(provider: String, model: String, candidates: Int) {
        self.provider = provider
        self.builder = ChunkBuilder(id: "", created: WireSupport.now(), model: model)
        self.expectedCandidates = candidates
    }

    mutating func decode(_ sse: SSEEvent) throws -> [ProviderChunk] {
        let response: GeminiWireFormat.Response
        do {
            response = try JSON.decode(GeminiWireFormat.Response.self, from: sse.bytes)
        } catch {
            throw ProviderError(.protocolError, "\(provider) sent a stream event that is not JSON", retryable: true)
        }
        try GeminiWireFormat.check(response, provider: provider)
        if !identified {
            identified = true
            builder.id = response.responseId ?? "chatcmpl-gemini-\(WireSupport.now())-\(UInt32.random(in: .min ... .max))"
            if let version = response.modelVersion { builder.model = version }
        }
        if let u = response.usageMetadata { usage = u }

        var choices: [ChunkChoice] = []
        for candidate in response.candidates ?? [] {
            let index = candidate.index ?? 0
            var state = candidates[index] ?? CandidateState()
            guard !state.finished else { continue }
            var text = ""
            var calls: [ToolCallDelta] = []
            for part in candidate.content?.parts ?? [] {
                if let t = part.text, part.thought != true { text += t }
                if let f = part.functionCall {
                    calls.append(ToolCallDelta(
                        index: state.tools, id: "call_\(nextCallID)", type: "function",
                        function: .init(name: f.name, arguments: WireSupport.jsonText(f.args ?? .object([:])))))
                    state.tools += 1
                    nextCallID += 1
                }
            }
            let finish = GeminiWireFormat.finishReason(candidate.finishReason, calledTools: state.tools > 0)
            if finish != nil { state.finished = true }
            let role: String? = state.roleSent ? nil : "assistant"
            state.roleSent = true
            candidates[index] = state
            if text.isEmpty, calls.isEmpty, finish == nil, role == nil { continue }
            let content: String? = text.isEmpty ? (role != nil && calls.isEmpty ? "" : nil) : text
            choices.append(ChunkChoice(
                index: index, delta: ChunkDelta(role: role, content: content, toolCalls: calls.isEmpty ? nil : calls),
                finishReason: finish))
        }

        var out: [ProviderChunk] = []
        if !choices.isEmpty { out.append(try builder.chunk(choices)) }
        if !isComplete, candidates.count >= expectedCandidates, candidates.values.allSatisfy(\.finished) {
            isComplete = true
        }
        // The usage once finished, and again if a later event revises it.
        if isComplete, let usage, usage != publishedUsage {
            publishedUsage = usage
            out.append(try builder.usageChunk(GeminiWireFormat.usage(usage)))
        }
        return out
    }
}
