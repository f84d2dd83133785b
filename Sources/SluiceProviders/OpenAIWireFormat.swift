import SluiceCore
import SluiceHTTPClient

/// OpenAI chat completions, and the servers that copy it (`openai-compatible`, the mock
/// provider) and Azure OpenAI (deployment in the path, `api-key` header).
public struct OpenAIWireFormat: WireFormat {
    public var azure: Bool

    public init(azure: Bool = false) { self.azure = azure }

    public func makeRequest(_ call: ProviderCall) throws -> CurlRequest {
        var body: JSONValue
        if let passthrough = call.passthroughBody {
            body = passthrough
        } else {
            var o = call.parameters
            o["model"] = .string(call.model)
            o["messages"] = .array(call.messages)
            o["stream"] = .bool(call.stream)
            if call.stream, call.provider.streamOptions ?? true {
                var options = o["stream_options"]?.objectValue ?? [:]
                options["include_usage"] = .bool(true)
                o["stream_options"] = .object(options)
            }
            body = .object(o)
        }
        let base = call.provider.baseURL.hasSuffix("/") ? String(call.provider.baseURL.dropLast()) : call.provider.baseURL
        var headers: HTTPHeaders = ["content-type": "application/json"]
        headers["accept"] = call.stream ? "text/event-stream" : "application/json"
        let url: String
        if azure {
            let version = call.provider.apiVersion ?? "2024-10-21"
            let deployment = try WireSupport.pathSegment(call.model, field: "Azure deployment (model)")
            url = "\(base)/openai/deployments/\(deployment)/chat/completions?api-version=\(version)"
            if let key = call.apiKey { headers["api-key"] = key.value }
        } else {
            url = "\(base)/chat/completions"
            if let key = call.apiKey { headers["authorization"] = "Bearer \(key.value)" }
        }
        return CurlRequest(
            method: "POST", url: url, headers: headers, body: try JSON.encode(body),
            connectTimeout: call.connectTimeout, idleTimeout: call.idleTimeout, totalTimeout: call.totalTimeout,
            caFile: call.provider.caFile)
    }

    public func makeStreamDecoder(_ call: ProviderCall) -> any StreamDecoder {
        Decoder()
    }

    public func decodeCompletion(_ body: [UInt8], call: ProviderCall) throws -> ChatCompletion {
        do {
            return try JSON.decode(ChatCompletion.self, from: body)
        } catch {
            throw ProviderError(.protocolError, "the provider's response is not a chat completion", retryable: false)
        }
    }

    struct Decoder: StreamDecoder {
        private(set) var isComplete = false
        /// The last chunk read, whose id and model strings the next one reuses.
        private var previous: ChatCompletionChunk?

        mutating func decode(_ event: SSEEvent) throws -> [ProviderChunk] {
            if event.dataEquals("[DONE]") {
                isComplete = true
                return []
            }
            let bytes = event.bytes
            // The common chunk is read in place; anything unusual takes JSONDecoder.
            guard let chunk = ChunkReader.read(bytes, previous: previous) ?? (try? JSON.decode(ChatCompletionChunk.self, from: bytes)) else {
                if let message = OpenAIWireFormat().errorMessage(bytes) {
                    throw ProviderError(.http, message, retryable: false)
                }
                throw ProviderError(.protocolError, "the provider sent a chunk that is not JSON", retryable: true)
            }
            previous = chunk
            if chunk.usage == nil, chunk.choices.allSatisfy({ $0.delta == nil && $0.finishReason == nil }) {
                // An error reported inside the stream decodes as an empty chunk.
                if chunk.choices.isEmpty, chunk.id.isEmpty, let message = OpenAIWireFormat().errorMessage(bytes) {
                    throw ProviderError(.http, "the provider sent an error in its stream: \(message)", retryable: false)
                }
                // Azure's content-filter results: chunks with no choices (prompt filter)
                // or with choices that carry no delta: nothing for the client.
                return []
            }
            return [ProviderChunk(json: bytes, chunk: chunk)]
        }
    }
}
