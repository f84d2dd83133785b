import Hummingbird
import SluiceCore

/// `POST /api/engine/chat/{provider}`, LLMstudio-compatible: `api_key` (the provider's
/// key for this request, never logged or echoed), `model`, `chat_input`, `parameters`
/// and `is_stream` (typed "any" by LLMstudio: a boolean, `"true"`/`"false"` or 0/1;
/// default false).
///
/// The answer is LLMstudio's response (the unified response is a superset of it).
/// LLMstudio itself streams bare text; Sluice streams the same chunks as its OpenAI
/// endpoint does, `data: {chat.completion.chunk}` lines then `data: [DONE]`, so one
/// SSE reader serves every endpoint and nothing (tool calls, finish reasons) is lost.
extension Gateway {
    func addLLMstudioRoutes(to router: Router<GatewayContext>) {
        router.post("/api/engine/chat/:provider") { request, context in try await self.llmstudioChat(request, context: context) }
    }

    func llmstudioChat(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        let providerName = try context.parameters.require("provider")
        guard config.provider(named: providerName) != nil else {
            throw APIError.notFound(
                "unknown provider \"\(providerName)\"; configured: \(config.providers.map(\.name).joined(separator: ", "))",
                param: "provider", code: "unknown_provider")
        }
        var request = request
        let fields = RequestFields(try await readJSONObject(&request))
        let model = try fields.requiredString("model")
        let chatInput = try fields.requiredString("chat_input")
        let apiKey = try fields.string("api_key").flatMap { $0.isEmpty ? nil : Secret($0) }
        let parameters = try Gateway.llmstudioParameters(fields["parameters"])
        let stream = try fields.bool("is_stream") ?? false
        let sessionID = try fields.string("session_id")
        do {
            _ = try config.resolve(provider: providerName, model: model)
        } catch let error as SluiceError {
            throw APIError.badRequest(error.message, param: "model", code: error.code.rawValue)
        }

        let job = Job(
            id: Gateway.newJobID(), provider: providerName, model: model, request: .chatInput(chatInput),
            parameters: parameters, stream: stream, sessionID: sessionID, tenant: tenant, apiKey: apiKey)
        let includeUsage = parameters["stream_options"]?["include_usage"]?.boolValue ?? false
        return try await runCompletion(job, request: request, context: context, style: CompletionStyle(
            api: "llmstudio", stream: stream, includeUsageChunk: includeUsage))
    }

    /// LLMstudio's `parameters` is typed "any": an object, null, or an object written
    /// as a JSON string.
    static func llmstudioParameters(_ value: JSONValue?) throws -> [String: JSONValue] {
        switch value {
        case nil, .null?:
            return [:]
        case .object(let o)?:
            return o
        case .string(let s)? where s.isEmpty || s == "None":
            return [:]
        case .string(let s)?:
            if case .object(let o)? = try? JSON.decode(JSONValue.self, from: Array(s.utf8)) { return o }
            fallthrough
        default:
            throw APIError.badRequest(
                "\"parameters\" must be an object of hyperparameters, got \(value?.typeName ?? "nothing")",
                param: "parameters", code: "invalid_type")
        }
    }
}
