import Hummingbird

/// `GET /openapi.json` (OpenAPI 3.1) and `GET /docs`, a self-contained page that shows it.
extension Gateway {
    func addDocsRoutes(to router: Router<BasicRequestContext>) {
        router.get("/openapi.json") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        router.get("/docs") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: DocsPage.html)))
        }
    }
}
