import Foundation
import SluiceCore
import SluiceHTTPClient
import SluiceMockProvider
import Testing

/// One tenant's jobs in flight are capped (`gateway.max_jobs_per_tenant`): a flood from one
/// tenant is refused with 429 and leaves the others alone.
@Suite(.needsServices, .timeLimit(.minutes(2)))
struct TenantCapTests {
    @Test func aTenantOverItsCapIsRefusedAndOthersAreNot() async throws {
        // Tenants of this test only: the count lives in Redis, which the suite shares.
        let run = UUID().uuidString.prefix(6).lowercased()
        let keys: [SluiceConfig.APIKey] = [.init(key: "k-a", tenant: "cap-a-\(run)"), .init(key: "k-b", tenant: "cap-b-\(run)")]
        let a: HTTPHeaders = ["authorization": "Bearer k-a"]
        let b: HTTPHeaders = ["authorization": "Bearer k-b"]
        try await TestStack.with(mock: MockBehavior(chunks: 20, chunkDelay: .milliseconds(100)), gateway: true, configure: {
            $0.gateway.apiKeys = keys
            $0.gateway.maxJobsPerTenant = 2
        }) { stack in
            let tag = UUID().uuidString.prefix(6).lowercased()
            for i in 0..<2 {
                let r = try await stack.call("POST", "/v1/jobs", headers: a, json: ["id": .string("cap-\(tag)-\(i)"), "model": "default", "chat_input": "x"])
                #expect(r.status == 202)
            }
            // The third while two run: refused, naming the limit, with Retry-After; its id stays free.
            let third = try await stack.call("POST", "/v1/jobs", headers: a, json: ["id": .string("cap-\(tag)-2"), "model": "default", "chat_input": "x"])
            #expect(third.status == 429)
            #expect(third.json["error"]?["code"] == "too_many_jobs")
            #expect(third.json["error"]?["message"]?.stringValue?.contains("max_jobs_per_tenant") == true)
            #expect(third.headers["retry-after"] != nil)
            // Another tenant is not held back by a's jobs.
            let other = try await stack.call("POST", "/v1/jobs", headers: b, json: ["id": .string("cap-\(tag)-b"), "model": "default", "chat_input": "x"])
            #expect(other.status == 202)

            // Once a's jobs finish, the worker takes them off the count: a may submit again.
            _ = try await stack.waitForResults(3, timeout: .seconds(60))
            var again = 0
            for _ in 0..<100 {
                again = try await stack.call("POST", "/v1/jobs", headers: a, json: ["id": .string("cap-\(tag)-2"), "model": "default", "chat_input": "x"]).status
                if again == 202 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(again == 202)
        }
    }
}
