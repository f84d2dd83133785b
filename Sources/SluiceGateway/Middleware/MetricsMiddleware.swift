import Hummingbird

/// Counts every request by route, method and status. Sits outside the error middleware,
/// so errors are counted with the status they were answered with; an event stream is
/// counted when its head goes out.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: GatewayMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            let response = try await next(request, context)
            record(request, context, status: response.status.code)
            return response
        } catch let error as HTTPResponseError {
            record(request, context, status: error.status.code)
            throw error
        } catch {
            record(request, context, status: 500)
            throw error
        }
    }

    private func record(_ request: Request, _ context: Context, status: Int) {
        // Unmatched requests are one label value, whatever their path (bounded cardinality).
        let route = context.endpointPath.flatMap { $0.hasPrefix("/") ? $0 : nil } ?? "unmatched"
        metrics.request(route: route, method: request.method.rawValue, status: status)
    }
}
