import Hummingbird

/// `GET /openapi.json` (OpenAPI 3.1), `GET /docs`, a self-contained page that shows it,
/// and `GET /`, the live console.
extension Gateway {
    func addDocsRoutes(to router: Router<GatewayContext>) {
        router.get("/openapi.json") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
        }
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                body: .init(byteBuffer: ByteBuffer(string: ConsolePage.html)))
        }
        router.get("/docs") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: DocsPage.html)))
        }
    }
}
