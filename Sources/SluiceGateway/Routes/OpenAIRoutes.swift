import Hummingbird
import SluiceCore

/// `POST /v1/chat/completions`, OpenAI-compatible: the official SDKs work against it
/// with their base URL set to the gateway's `/v1`.
///
/// Streaming answers `data: {chunk}` lines (each chunk's bytes as the provider sent
/// them) and `data: [DONE]`, with no `event:` lines; the usage-only chunk is sent only
/// when asked with `stream_options.include_usage`, as OpenAI does. Otherwise the answer
/// is a `chat.completion`: the unified response, which adds `metrics` and `job_id`.
extension Gateway {
    func addOpenAIRoutes(to router: Router<GatewayContext>) {
        router.post("/v1/chat/completions") { request, context in try await self.chatCompletions(request, context: context) }
    }

    func chatCompletions(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        var request = request
        let fields = RequestFields(try await readJSONObject(&request))
        let model = try fields.requiredString("model")
        guard let messages = fields["messages"] else {
            throw APIError.badRequest("missing required field \"messages\"", param: "messages", code: "missing_field")
        }
        let stream = try fields.bool("stream") ?? false
        do {
            _ = try config.resolve(provider: nil, model: model)
        } catch let error as SluiceError {
            throw APIError.notFound("the model \"\(model)\" does not exist: \(error.message)", param: "model", code: "model_not_found")
        }

        var object = fields.hyperparameters
        object["id"] = .string(Gateway.newJobID())
        object["model"] = .string(model)
        object["messages"] = messages
        object["stream"] = .bool(stream)
        if let metadata = fields["metadata"] { object["metadata"] = metadata }
        var job = try parseJob(.object(object))
        job.tenant = tenant
        return try await runCompletion(job, request: request, context: context, style: CompletionStyle(
            api: "openai", stream: stream, includeUsageChunk: fields.includeUsage))
    }

    /// A job built by an endpoint, validated by the domain model; its errors are 400s
    /// that name the field.
    func parseJob(_ value: JSONValue) throws -> Job {
        do {
            return try Job.parse(value, limits: JobLimits(config))
        } catch let error as SluiceError {
            throw APIError(error)
        }
    }
}
