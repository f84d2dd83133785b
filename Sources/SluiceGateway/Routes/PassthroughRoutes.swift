import Hummingbird
import SluiceCore

/// `POST /api/v1/prompts/passthrough/{provider}/`, Smarter-compatible: any JSON object
/// the provider's API accepts is sent to it as it is (a job with `passthrough: true`),
/// and the provider's own response comes back. `"stream": true` in the body streams
/// the provider's chunks as `data:` lines, then `data: [DONE]`.
///
/// As in Smarter: 403 for missing or bad credentials (when keys are configured), 404
/// for an unknown provider, 400 for a body that is not a JSON object.
extension Gateway {
    func addPassthroughRoutes(to router: Router<GatewayContext>) {
        router.post("/api/v1/prompts/passthrough/:provider/") { request, context in
            try await self.passthrough(request, context: context)
        }
    }

    func passthrough(_ request: Request, context: GatewayContext) async throws -> Response {
        let tenant = try keys.tenant(of: request, failure: .forbidden)
        let providerName = try context.parameters.require("provider")
        guard config.provider(named: providerName) != nil else {
            throw APIError.notFound("unknown provider \"\(providerName)\"", param: "provider", code: "unknown_provider")
        }
        var request = request
        let body = try await readJSONObject(&request)
        let stream = body["stream"]?.boolValue ?? false
        let job = Job(
            id: Gateway.newJobID(), provider: providerName, model: body["model"]?.stringValue,
            request: .passthrough(body: .object(body)), stream: stream, tenant: tenant)
        return try await runCompletion(job, request: request, context: context, style: CompletionStyle(
            api: "passthrough", stream: stream, includeUsageChunk: true, body: .raw))
    }
}
