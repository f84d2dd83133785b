import HTTPTypes
import Hummingbird

/// Cross-origin access for the origins of `gateway.cors_origins`, and for no other:
/// a preflight from a listed origin is answered (204), and responses to it carry
/// `Access-Control-Allow-Origin`. Without the list no CORS header is ever sent, so a
/// browser on another site cannot send a JSON request or read an answer.
struct CORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let origins: Set<String>

    static var allowedHeaders: String { "authorization, content-type, last-event-id, x-api-key, x-portkey-api-key" }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], origins.contains(origin) else {
            return try await next(request, context)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            return Response(status: .noContent, headers: [
                .accessControlAllowOrigin: origin,
                .accessControlAllowMethods: "GET, POST, DELETE",
                .accessControlAllowHeaders: Self.allowedHeaders,
                .accessControlMaxAge: "600",
                .vary: "Origin",
            ])
        }
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response()
        }
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = HTTPField.Name.sluiceJobID.rawName
        response.headers[.vary] = "Origin"
        return response
    }
}
