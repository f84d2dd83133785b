import HTTPTypes
import SluiceCore
import Testing

/// What a page on another site can make a visitor's browser do to the gateway: nothing.
/// A POST that is not JSON is refused before anything runs (browsers send `text/plain`
/// and forms cross-site without asking), and a JSON one needs a CORS preflight that only
/// the origins of `gateway.cors_origins` pass.
struct CrossSiteTests {
    @Test func onlyJSONBodiesArePosted() async throws {
        // An open gateway: the case a browser could be used against.
        let queue = InMemoryJobQueue()
        try await RouteTests.withGateway(queue: queue, configure: { $0.gateway.apiKeys = [] }) { call in
            let body: RouteTests.Body = ["model": "default", "chat_input": "x", "messages": [["role": "user", "content": "hi"]]]
            for path in RouteTests.submitting {
                for contentType in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", nil] {
                    let answer = try await call(.post, path, contentType.map { [.contentType: $0] } ?? [:], body)
                    #expect(answer.status == 415, "\(path) \(contentType ?? "none")")
                    #expect(answer.json["error"]?["code"] == "unsupported_media_type")
                    #expect(answer.json["error"]?["message"]?.stringValue?.contains("application/json") == true)
                }
            }
            #expect(queue.records.isEmpty, "nothing refused reaches the queue")
            let json = try await call(.post, "/v1/jobs", [.contentType: "application/json; charset=utf-8"], ["model": "default", "chat_input": "x"])
            #expect(json.status == 202)
        }
        #expect(queue.records.count == 1)
    }

    @Test func noOriginIsAllowedUnlessConfigured() async throws {
        let preflight: HTTPFields = [
            .origin: "https://evil.example", .accessControlRequestMethod: "POST", .accessControlRequestHeaders: "content-type",
        ]
        try await RouteTests.withGateway { call in
            let answer = try await call(.options, "/v1/jobs", preflight, nil)
            #expect(answer.headers[.accessControlAllowOrigin] == nil)
            #expect(answer.status >= 400)
            let get = try await call(.get, "/v1/providers", [.origin: "https://evil.example", .authorization: "Bearer k-a"], nil)
            #expect(get.status == 200)
            #expect(get.headers[.accessControlAllowOrigin] == nil)
        }
        try await RouteTests.withGateway(configure: { $0.gateway.corsOrigins = ["https://app.example"] }) { call in
            var allowed = preflight
            allowed[.origin] = "https://app.example"
            let ok = try await call(.options, "/v1/jobs", allowed, nil)
            #expect(ok.status == 204)
            #expect(ok.headers[.accessControlAllowOrigin] == "https://app.example")
            #expect(ok.headers[.accessControlAllowHeaders]?.contains("authorization") == true)
            let read = try await call(.get, "/v1/providers", [.origin: "https://app.example", .authorization: "Bearer k-a"], nil)
            #expect(read.headers[.accessControlAllowOrigin] == "https://app.example")
            // Another origin still gets nothing.
            let evil = try await call(.options, "/v1/jobs", preflight, nil)
            #expect(evil.headers[.accessControlAllowOrigin] == nil)
        }
    }

    @Test func corsOriginsMustBeOrigins() {
        for bad in ["*", "app.example", "https://app.example/"] {
            #expect(throws: SluiceError.self, "\(bad)") {
                try SluiceConfig.parse(yaml: "gateway: { cors_origins: [\"\(bad)\"] }")
            }
        }
    }
}
