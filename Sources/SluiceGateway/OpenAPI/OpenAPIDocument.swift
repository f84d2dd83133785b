/// The gateway's API description (OpenAPI 3.1), served at `/openapi.json` and shown at
/// `/docs`. The document is `Resources/openapi.json`, compiled into the binary. Every
/// route of `Gateway.buildRouter()` is described there; a test compares the two, and
/// `make test` lints the document and runs schemathesis against a live gateway with it.
enum OpenAPIDocument {
    /// The document's bytes, as written in the resource.
    static let bytes: [UInt8] = PackageResources.openapi_json

    static let json = String(decoding: bytes, as: UTF8.self)
}
