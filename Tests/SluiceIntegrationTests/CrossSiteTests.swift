import Foundation
import SluiceCore
import SluiceHTTPClient
import Testing

/// What a page on another site can make a visitor's browser do to the gateway: nothing.
/// A POST that is not JSON is refused before anything runs (browsers send `text/plain`
/// and forms cross-site without asking), and a JSON one needs a CORS preflight that only
/// the origins of `gateway.cors_origins` pass.
@Suite(.needsServices, .timeLimit(.minutes(2)))
struct CrossSiteTests {
    static let routes = [
        "/v1/jobs", "/v1/chat/completions", "/api/engine/chat/mock", "/v1/prompts/welcome/completions",
        "/api/v1/prompts/passthrough/mock/",
    ]

    @Test func onlyJSONBodiesArePosted() async throws {
        // An open gateway: the case a browser could be used against.
        try await TestStack.with(gateway: true) { stack in
            let body = try JSON.encode(["model": "default", "chat_input": "x", "messages": GatewayTests.user] as JSONValue)
            for path in Self.routes {
                for contentType in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", nil] {
                    var headers: HTTPHeaders = [:]
                    // The test client adds application/json to a body without a type: send one.
                    headers.add(name: "content-type", value: contentType ?? "")
                    let answer = try await stack.call("POST", path, headers: headers, body: body)
                    #expect(answer.status == 415, "\(path) \(contentType ?? "none")")
                    #expect(answer.json["error"]?["code"] == "unsupported_media_type")
                    #expect(answer.json["error"]?["message"]?.stringValue?.contains("application/json") == true)
                }
            }
            #expect(try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="jobs"}"#) ?? 0 == 0)
            let job = try JSON.encode(["model": "default", "messages": GatewayTests.user] as JSONValue)
            let json = try await stack.call("POST", "/v1/jobs", headers: ["content-type": "application/json; charset=utf-8"], body: job)
            #expect(json.status == 202)
        }
    }

    @Test func noOriginIsAllowedUnlessConfigured() async throws {
        let preflight: HTTPHeaders = [
            "origin": "https://evil.example", "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        ]
        try await TestStack.with(gateway: true) { stack in
            let answer = try await stack.call("OPTIONS", "/v1/jobs", headers: preflight)
            #expect(answer.headers["access-control-allow-origin"] == nil)
            #expect(answer.status >= 400)
            let get = try await stack.call("GET", "/v1/providers", headers: ["origin": "https://evil.example"])
            #expect(get.headers["access-control-allow-origin"] == nil)
        }
        try await TestStack.with(gateway: true, configure: { $0.gateway.corsOrigins = ["https://app.example"] }) { stack in
            var allowed = preflight
            allowed["origin"] = "https://app.example"
            let ok = try await stack.call("OPTIONS", "/v1/jobs", headers: allowed)
            #expect(ok.status == 204)
            #expect(ok.headers["access-control-allow-origin"] == "https://app.example")
            #expect(ok.headers["access-control-allow-headers"]?.contains("authorization") == true)
            let read = try await stack.call("GET", "/v1/providers", headers: ["origin": "https://app.example"])
            #expect(read.headers["access-control-allow-origin"] == "https://app.example")
            // Another origin still gets nothing.
            let evil = try await stack.call("OPTIONS", "/v1/jobs", headers: preflight)
            #expect(evil.headers["access-control-allow-origin"] == nil)
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
