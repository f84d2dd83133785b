import Foundation
import Hummingbird
import SluiceCore

/// `POST /v1/prompts/{prompt_id}/completions`, Portkey-compatible: `variables`,
/// hyperparameter overrides at the top level (or under `parameters`), `stream`
/// (default false). The `portkey-ai` SDK works against it with its base URL set to the
/// gateway's `/v1` and the gateway's key as its API key (`x-portkey-api-key`).
///
/// The template (`prompts_dir/{prompt_id}.yaml`) is loaded and rendered here, before
/// anything is submitted: an unknown prompt is a 404 and a missing variable a 400
/// naming it. The job then carries `prompt_id` and `variables`, like any Kafka job.
extension Gateway {
    func addPortkeyRoutes(to router: Router<GatewayContext>) {
        router.post("/v1/prompts/:prompt_id/completions") { request, context in
            try await self.promptCompletion(request, context: context)
        }
    }

    func promptCompletion(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request)
        let promptID = try context.parameters.require("prompt_id")
        var request = request
        let fields = RequestFields(try await readJSONObject(&request))
        let variables = try fields.object("variables") ?? [:]
        let template = try loadPrompt(promptID)
        do {
            _ = try template.render(variables)
        } catch let error as SluiceError {
            throw APIError(error)
        }
        let stream = try fields.bool("stream") ?? false
        var parameters = fields.hyperparameters
        if let p = try fields.object("parameters") { parameters.merge(p, uniquingKeysWith: { $1 }) }
        let model = try fields.string("model")
        // Where the worker will send it (the template's routing rule).
        let target = template.target(provider: nil, model: model, config: config)
        do {
            _ = try config.resolve(provider: target.provider, model: target.model)
        } catch let error as SluiceError {
            throw APIError.badRequest("prompt \"\(promptID)\": \(error.message)", param: "model", code: error.code.rawValue)
        }

        let job = Job(
            id: Gateway.newJobID(), model: model, request: .prompt(id: promptID, variables: variables),
            parameters: parameters, stream: stream, tenant: tenant, metadata: fields["metadata"] ?? .null)
        return try await runCompletion(job, request: request, context: context, style: CompletionStyle(
            api: "portkey", stream: stream, includeUsageChunk: fields.includeUsage))
    }

    /// The template `id` (`PromptTemplate.load`): 404 when there is none, 500 when it is broken.
    func loadPrompt(_ id: String) throws -> PromptTemplate {
        do {
            return try PromptTemplate.load(id: id, from: config.promptsDir)
        } catch let error as SluiceError where error.code == .unknownPrompt {
            throw APIError.notFound(error.message, param: "prompt_id", code: "unknown_prompt")
        } catch let error as SluiceError {
            logger.error("broken prompt template: \(error.message)", metadata: ["prompt_id": "\(id)"])
            throw APIError(.internalServerError, "server_error", error.message, code: "invalid_prompt")
        }
    }
}
