import Foundation
import Logging
import SluiceCore
import SluiceHTTPClient
import SluiceMockProvider
import Testing

/// The HTTP client against the mock provider serving HTTPS with HTTP/2 and a self-signed
/// certificate: requests to one host share a connection as streams, connections (and so
/// TLS handshakes) are reused from one request to the next, and the certificate is
/// trusted only through the CA file given.
@Suite(.serialized)
struct HTTPSClientTests {
    @Test func concurrentRequestsAreMultiplexedOnOneConnection() async throws {
        try await withSecureProvider { client, provider, caFile in
            // Twenty streams held open together (3 chunks 100 ms apart): over HTTP/1.1
            // each would need a connection and a handshake of its own.
            func round() async throws -> [Int] {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<20 {
                        group.addTask {
                            let response = try await client.execute(chatRequest(provider, caFile: caFile))
                            let body = try await response.body.collectString()
                            #expect(body.hasSuffix("data: [DONE]\n\n"), "\(body.suffix(80))")
                            return response.status
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            let firstStatuses = try await round()
            #expect(firstStatuses == Array(repeating: 200, count: 20))
            let first = provider.stats.snapshot
            #expect(first.peakActiveStreams >= 10, "the requests did not overlap: \(first)")
            // One connection, or two if the first request's handshake had not started when
            // another looked for a connection to wait for.
            #expect(first.connectionsOpened <= 2, "\(first.connectionsOpened) connections for 20 concurrent requests")

            // The next round reuses the connection: no new handshake.
            let secondStatuses = try await round()
            #expect(secondStatuses == Array(repeating: 200, count: 20))
            #expect(provider.stats.snapshot.connectionsOpened == first.connectionsOpened)
        }
    }

    @Test func withoutTheCAVerificationFailsAndSaysSo() async throws {
        try await withSecureProvider { client, provider, caFile in
            // The system's bundle does not know the mock's certificate.
            let error = try await #require(throws: HTTPClientError.self) {
                _ = try await client.execute(chatRequest(provider, caFile: nil))
            }
            #expect(error.code == .tlsVerification, "\(error)")
            #expect(error.message.contains("certificate"), "\(error)")
            #expect(!error.message.contains("sk-test"))

            // A CA file that is not there is the same kind of failure, and says which.
            let missing = caFile + ".missing"
            let badFile = try await #require(throws: HTTPClientError.self) {
                _ = try await client.execute(chatRequest(provider, caFile: missing))
            }
            #expect(badFile.code == .tlsVerification, "\(badFile)")
            #expect(provider.stats.snapshot.requests == 0, "a request reached the provider over an unverified connection")

            // The same client still works once the CA is given.
            let response = try await client.execute(chatRequest(provider, caFile: caFile))
            #expect(response.status == 200)
            _ = try await response.body.collect()
        }
    }
}

/// A job through the whole pipeline against the mock serving HTTPS: it succeeds with the
/// provider's `ca_file` configured, and fails as a connection error that names TLS
/// verification (and is not retried) without it.
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct HTTPSProviderJobTests {
    @Test func jobSucceedsWithTheProvidersCAFileAndFailsWithout() async throws {
        try await withSecureMock { provider, caFile in
            try await TestStack.with(configure: { config in
                config.worker.maxAttempts = 3
                config.providers += [
                    .init(name: "secure", kind: .openaiCompatible, baseURL: provider.baseURL, caFile: caFile),
                    .init(name: "untrusted", kind: .openaiCompatible, baseURL: provider.baseURL),
                ]
            }) { stack in
                let key = "sk-test-\(UUID().uuidString.prefix(8))"
                for name in ["secure", "untrusted"] {
                    try await stack.submit(["id": .string(name), "provider": .string(name), "model": "mock-1", "stream": true,
                                            "api_key": .string(key), "chat_input": "Tell me about rivers"])
                }
                let results = try await stack.waitForResults(2)

                let ok = try #require(results["secure"])
                #expect(ok.status == .succeeded, "\(String(describing: ok.error))")
                #expect(ok.metrics.streamComplete)
                #expect(ok.usage?.completionTokens == 8)

                let refused = try #require(results["untrusted"])
                #expect(refused.status == .failed)
                let error = try #require(refused.error)
                #expect(error.type == "connection_error", "\(error)")
                #expect(error.message.contains("TLS verification"), "\(error.message)")
                #expect(error.message.contains("providers.untrusted.ca_file"), "\(error.message)")
                #expect(refused.metrics.attempts == 1, "an untrusted certificate was retried")
                #expect(!String(decoding: try JSON.encode(refused), as: UTF8.self).contains(key))
                // Only the trusted job's request reached the provider.
                #expect(provider.stats.snapshot.requests == 1)
            }
        }
    }
}

/// The mock serving HTTPS with a certificate made now, its CA file in a temporary folder.
private func withSecureMock(_ body: (MockProviderServer.Running, String) async throws -> Void) async throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-tls-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let certificate = try MockCertificate.selfSigned()
    let caFile = dir.appendingPathComponent("ca.pem").path
    try certificate.writeCertificate(to: caFile)
    try await MockProviderServer.withRunning(tls: certificate, logger: httpsTestLogger) { provider in
        #expect(provider.baseURL.hasPrefix("https://"))
        try await body(provider, caFile)
    }
}

private func withSecureProvider(_ body: (CurlClient, MockProviderServer.Running, String) async throws -> Void) async throws {
    try await withSecureMock { provider, caFile in
        let client = CurlClient(logger: httpsTestLogger)
        defer { client.shutdown() }
        try await body(client, provider, caFile)
    }
}

private func chatRequest(_ provider: MockProviderServer.Running, caFile: String?) -> CurlRequest {
    let body = #"{"model":"mock","stream":true,"messages":[{"role":"user","content":"Who are you?"}]}"#
    return CurlRequest(
        url: provider.baseURL + "/chat/completions",
        headers: [
            "content-type": "application/json", "authorization": "Bearer sk-test",
            "x-mock-chunks": "3", "x-mock-chunk-delay-ms": "100",
        ],
        body: Array(body.utf8), totalTimeout: .seconds(30), caFile: caFile)
}

private let httpsTestLogger = Logger(label: "sluice.test.https") { _ in SwiftLogNoOpLogHandler() }
