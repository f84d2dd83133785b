import HTTPTypes
import Hummingbird
import Logging

/// Every error becomes a JSON body: the gateway's own `APIError`s, Hummingbird's
/// `HTTPError`s (no such route, a body too large) and anything unexpected (a 500 that
/// names no internals).
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response()
        } catch let error as HTTPError {
            return JSONErrorMiddleware.apiError(for: error).response()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.error("unhandled error: \(error)", metadata: ["path": "\(request.uri.path)"])
            return APIError(.internalServerError, "server_error", "internal error; see the gateway's log").response()
        }
    }

    static func apiError(for error: HTTPError) -> APIError {
        let status = error.status
        switch status {
        case .notFound:
            return .notFound(error.body ?? "no route for this method and path; see /openapi.json")
        case .contentTooLarge:
            return APIError(status, "invalid_request_error", error.body ?? "the request body is too large", code: "request_too_large")
        case .methodNotAllowed:
            return APIError(status, "invalid_request_error", error.body ?? "method not allowed on this path")
        case .unauthorized:
            return APIError(status, "authentication_error", error.body ?? "authentication required")
        default:
            let type = status.code >= 500 ? "server_error" : "invalid_request_error"
            return APIError(status, type, error.body ?? status.reasonPhrase)
        }
    }
}
