import Foundation
import Logging
import SluiceHTTPClient
import SluiceMockProvider
import Synchronization
import Testing

/// The libcurl client against the mock provider, in process, over real loopback HTTP.
/// Serialized: several tests measure timing, which parallel load on a small machine
/// would blur.
@Suite(.serialized)
struct HTTPClientTests {
    // MARK: Round trips

    @Test func nonStreamingRoundTrip() async throws {
        try await withProvider { client, provider in
            let response = try await client.execute(chatRequest(provider, content: "Who are you?"))
            #expect(response.status == 200)
            #expect(response.header("CONTENT-TYPE") == "application/json")
            let json = try jsonObject(try await response.body.collect())
            #expect(json["object"] as? String == "chat.completion")
            #expect(json["model"] as? String == "mock")
            let choice = try #require((json["choices"] as? [[String: Any]])?.first)
            let message = try #require(choice["message"] as? [String: Any])
            #expect(message["role"] as? String == "assistant")
            #expect(((message["content"] as? String) ?? "").split(separator: " ").count == 8)
            #expect(choice["finish_reason"] as? String == "stop")
            let usage = try #require(json["usage"] as? [String: Int])
            #expect(usage["completion_tokens"] == 8)
            #expect(usage["prompt_tokens"] == 4 + 3)  // 4 per message + ⌈12 bytes / 4⌉
            #expect(usage["total_tokens"] == usage["prompt_tokens"]! + 8)
        }
    }

    @Test func streamingArrivesChunkByChunkWithPacing() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "10", "x-mock-chunk-delay-ms": "50"])
            let start = ContinuousClock.now
            let response = try await client.execute(request)
            #expect(response.status == 200)
            #expect(response.header("content-type")?.hasPrefix("text/event-stream") == true)
            var arrivals: [Duration] = []
            var bytes: [UInt8] = []
            for try await chunk in response.body {
                arrivals.append(ContinuousClock.now - start)
                bytes += chunk
            }
            let events = sseEvents(bytes)
            #expect(events.last == "[DONE]")
            #expect(try contentDeltas(events).count == 10)
            // Nine 50 ms gaps: the chunks are spread over the stream, not bunched at its end.
            #expect(arrivals.count >= 8, "\(arrivals)")
            #expect(arrivals.last! - arrivals.first! >= .milliseconds(350), "\(arrivals)")
            let half = arrivals.filter { $0 < arrivals.last! - .milliseconds(200) }
            #expect(half.count >= arrivals.count / 3, "\(arrivals)")
        }
    }

    @Test func outputIsDeterministic() async throws {
        try await withProvider { client, provider in
            func text(_ content: String, stream: Bool) async throws -> String {
                let body = try await client.execute(chatRequest(provider, stream: stream, content: content)).body.collect()
                if stream { return try contentDeltas(sseEvents(body)).joined() }
                let choice = try #require((try jsonObject(body)["choices"] as? [[String: Any]])?.first)
                return try #require((choice["message"] as? [String: Any])?["content"] as? String)
            }
            let first = try await text("Tell me a story", stream: true)
            #expect(try await text("Tell me a story", stream: true) == first)
            #expect(try await text("Tell me a story", stream: false) == first)
            #expect(try await text("Tell me another story", stream: true) != first)
        }
    }

    @Test func usageChunkOnlyWithIncludeUsage() async throws {
        try await withProvider { client, provider in
            let plain = sseEvents(try await client.execute(chatRequest(provider, stream: true)).body.collect())
            #expect(plain.last == "[DONE]")
            #expect(!plain.contains { $0.contains("\"usage\"") })

            let request = chatRequest(provider, stream: true, includeUsage: true, headers: ["x-mock-chunks": "5"])
            let events = sseEvents(try await client.execute(request).body.collect())
            #expect(events.last == "[DONE]")
            let usageChunk = try jsonObject(Array(events[events.count - 2].utf8))
            #expect((usageChunk["choices"] as? [Any])?.isEmpty == true)
            let usage = try #require(usageChunk["usage"] as? [String: Int])
            #expect(usage["completion_tokens"] == 5)
            let finish = try jsonObject(Array(events[events.count - 3].utf8))
            #expect(((finish["choices"] as? [[String: Any]])?.first?["finish_reason"]) as? String == "stop")
            #expect(finish["usage"] is NSNull)
        }
    }

    @Test func knobsInTheModelName() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, model: "mock-chunks=3,delay=1,ttft=1")
            let events = sseEvents(try await client.execute(request).body.collect())
            #expect(try contentDeltas(events).count == 3)

            let bad = try await client.execute(chatRequest(provider, model: "mock-chunks=lots"))
            #expect(bad.status == 400)
            #expect(try await bad.body.collectString().contains("invalid_mock_knob"))
        }
    }

    @Test func connectionsAreReused() async throws {
        try await withProvider { client, provider in
            for index in 0..<6 {
                let response = try await client.execute(chatRequest(provider, stream: index % 2 == 0))
                #expect(response.status == 200)
                _ = try await response.body.collect()
            }
            #expect(provider.stats.snapshot.connectionsOpened == 1)
        }
    }

    /// The connection cache holds as many connections as requests run at once: two waves
    /// of 16 concurrent streams open 16 connections, not a new one per request. With room
    /// for only 4, libcurl closes connections as transfers end and the second wave
    /// connects again (and, beyond the limit, scans every connection per ended transfer).
    @Test(arguments: [(32, true), (4, false)])
    func concurrentRequestsKeepTheirConnectionsWhenTheCacheHasRoom(maxConnections: Int, allReused: Bool) async throws {
        let client = CurlClient(logger: quietLogger, maxConnections: maxConnections)
        defer { client.shutdown() }
        try await MockProviderServer.withRunning(logger: quietLogger) { provider in
            for _ in 0..<2 {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<16 {
                        group.addTask {
                            // Slow enough that all 16 are open at once.
                            let request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "3", "x-mock-chunk-delay-ms": "100"])
                            let response = try await client.execute(request)
                            _ = try await response.body.collect()
                            return response.status
                        }
                    }
                    for try await status in group { #expect(status == 200) }
                }
            }
            let opened = provider.stats.snapshot.connectionsOpened
            if allReused {
                #expect(opened <= 16, "the second wave reuses the first wave's connections")
            } else {
                #expect(opened > 16, "with room for 4, the second wave reconnects")
            }
        }
    }

    @Test func slowReaderPausesTheTransferWithoutTrippingTheIdleTimeout() async throws {
        try await withProvider { client, provider in
            // About 4 MB as fast as the server can write, far beyond the 256 KiB buffer.
            var request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "20000"])
            request.idleTimeout = .milliseconds(200)
            let response = try await client.execute(request)
            try await Task.sleep(for: .milliseconds(600))  // the buffer fills, the transfer pauses
            var bytes: [UInt8] = []
            for try await chunk in response.body { bytes += chunk }
            let events = sseEvents(bytes)
            #expect(events.last == "[DONE]")
            #expect(try contentDeltas(events).count == 20000)
        }
    }

    // MARK: Faults

    @Test func rateLimitIsAResponseWithRetryAfter() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-status": "429", "x-mock-retry-after": "7"])
            let response = try await client.execute(request)
            #expect(response.status == 429)
            #expect(response.header("Retry-After") == "7")
            let error = try #require(try jsonObject(try await response.body.collect())["error"] as? [String: Any])
            #expect(error["code"] as? String == "rate_limit_exceeded")
            #expect(error["message"] is String)
        }
    }

    @Test func idleTimeoutFiresOnAStalledStream() async throws {
        try await withProvider { client, provider in
            var request = chatRequest(provider, stream: true, headers: ["x-mock-first-token-delay-ms": "5000"])
            request.idleTimeout = .milliseconds(500)
            let response = try await client.execute(request)
            #expect(response.status == 200)
            let start = ContinuousClock.now
            let error = await #expect(throws: HTTPClientError.self) {
                for try await _ in response.body {}
            }
            let elapsed = ContinuousClock.now - start
            #expect(error?.code == .idleTimeout)
            #expect(error?.message.contains("127.0.0.1") == true)
            // Well before the first token's 5 s: the idle timeout, not the stream, ended it
            // (bounded loosely, so a loaded machine does not fail it).
            #expect(elapsed >= .milliseconds(400) && elapsed < .seconds(4), "\(elapsed)")
        }
    }

    @Test func totalTimeout() async throws {
        try await withProvider { client, provider in
            var request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "100", "x-mock-chunk-delay-ms": "20"])
            request.totalTimeout = .milliseconds(400)
            let error = await #expect(throws: HTTPClientError.self) {
                for try await _ in try await client.execute(request).body {}
            }
            #expect(error?.code == .totalTimeout)
        }
    }

    @Test func droppedConnectionFailsTheBody() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-fail-after-chunks": "2"])
            let response = try await client.execute(request)
            var received: [UInt8] = []
            let error = await #expect(throws: HTTPClientError.self) {
                for try await chunk in response.body { received += chunk }
            }
            #expect(error?.code == .transfer)
            #expect(try contentDeltas(sseEvents(received)).count == 2)
        }
    }

    @Test func connectErrorOnAClosedPort() async throws {
        let client = CurlClient(logger: quietLogger)
        defer { client.shutdown() }
        let port = try closedPort()
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(CurlRequest(url: "http://127.0.0.1:\(port)/v1/chat/completions", headers: ["authorization": "Bearer sk-secret"]))
        }
        #expect(error?.code == .connect)
        #expect(error?.message.contains("127.0.0.1") == true)
        #expect(error?.message.contains("sk-secret") == false)
    }

    @Test func invalidRequests() async throws {
        let client = CurlClient(logger: quietLogger)
        defer { client.shutdown() }
        // Refused before any connection: `.invalidRequest`, not a connection error (port 1
        // has no listener, so a request that got as far as connecting would fail too, as
        // `.connect`).
        for request in [
            CurlRequest(url: "ftp://example.com/x"),
            CurlRequest(url: "http://127.0.0.1:1/", headers: ["x-evil": "a\r\nx-injected: 1"]),
            CurlRequest(method: "GET /", url: "http://127.0.0.1:1/"),
        ] {
            await #expect { _ = try await client.execute(request) } throws: { error in
                (error as? HTTPClientError)?.code == .invalidRequest
            }
        }
    }

    // MARK: Cancellation

    @Test func cancellingALongStreamAbortsItQuickly() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "1000", "x-mock-chunk-delay-ms": "50"])
            let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
            let reader = Task {
                var chunks = 0
                for try await _ in try await client.execute(request).body {
                    chunks += 1
                    if chunks == 3 { startedContinuation.yield() }
                }
                return chunks
            }
            for await _ in started { break }
            let cancelledAt = ContinuousClock.now
            reader.cancel()
            let result = await reader.result
            let elapsed = ContinuousClock.now - cancelledAt
            #expect(elapsed < .seconds(3), "\(elapsed)")
            #expect(throws: HTTPClientError.self) { try result.get() }
            #expect((try? result.get()) == nil)

            // The server sees the client go away: the connection is closed. (Typically within
            // 100 ms; the bound is loose for loaded CI machines.)
            try await eventually(timeout: .seconds(3)) {
                let stats = provider.stats.snapshot
                return stats.abandonedStreams == 1 && stats.activeStreams == 0 && stats.openConnections == 0
            } _: { "\(provider.stats.snapshot)" }

            // And the client carries on.
            let after = try await client.execute(chatRequest(provider, stream: true))
            #expect(sseEvents(try await after.body.collect()).last == "[DONE]")
        }
    }

    @Test func droppingTheBodyAbortsTheTransfer() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "1000", "x-mock-chunk-delay-ms": "20"])
            var response: CurlResponse? = try await client.execute(request)
            #expect(response?.status == 200)
            response = nil
            try await eventually { provider.stats.snapshot.abandonedStreams == 1 && provider.stats.snapshot.openConnections == 0 }
            #expect(provider.stats.snapshot.activeStreams == 0)
        }
    }

    @Test func cancellingWhileAwaitingTheHead() async throws {
        try await withProvider { client, provider in
            // A non-streaming response only starts once "generation" is done: 5 s here.
            let request = chatRequest(provider, headers: ["x-mock-first-token-delay-ms": "5000"])
            let task = Task { try await client.execute(request) }
            try await Task.sleep(for: .milliseconds(200))
            let cancelledAt = ContinuousClock.now
            task.cancel()
            let result = await task.result
            #expect(ContinuousClock.now - cancelledAt < .seconds(3), "the cancel ended it, not the 5 s answer")
            #expect(throws: HTTPClientError.self) { _ = try result.get() }
            #expect(try await client.execute(chatRequest(provider)).status == 200)
        }
    }

    // MARK: Consuming in place

    @Test func aConsumerGetsEveryWriteOnTheCurlThread() async throws {
        try await withProvider { client, provider in
            // The round hook runs on the curl thread: the consumer must run there too.
            let hookThread = Mutex<UInt?>(nil)
            client.afterEachRound {
                hookThread.withLock { $0 = UInt(pthread_self()) }
                return nil
            }
            let request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "10", "x-mock-chunk-delay-ms": "30"])
            let response = try await client.execute(request)
            let consumer = RecordingConsumer()
            try await response.body.consume(consumer, whenPaused: { Issue.record("no pause was asked for") })
            let seen = consumer.snapshot
            #expect(sseEvents(seen.bytes).last == "[DONE]")
            #expect(try contentDeltas(sseEvents(seen.bytes)).count == 10)
            #expect(seen.calls >= 8, "one call per write, not one per body")
            #expect(seen.threads.count == 1)
            #expect(seen.threads.first == hookThread.withLock { $0 }, "the consumer ran off the curl thread")
        }
    }

    @Test func chunksThatCameBeforeTheConsumerAreConsumedFirstInOrder() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, content: "Tell me a story", headers: ["x-mock-chunks": "50"])
            let expected = try contentDeltas(sseEvents(try await client.execute(request).body.collect()))
            let response = try await client.execute(request)
            try await Task.sleep(for: .milliseconds(300))  // the whole stream is buffered, and over
            let consumer = RecordingConsumer()
            try await response.body.consume(consumer, whenPaused: {})
            #expect(try contentDeltas(sseEvents(consumer.snapshot.bytes)) == expected)
        }
    }

    @Test func aPauseHoldsTheTransferUntilWhenPausedReturns() async throws {
        try await withProvider { client, provider in
            var request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "40", "x-mock-chunk-delay-ms": "10"])
            // Held longer than this: a paused transfer's silence is not the server's.
            request.idleTimeout = .milliseconds(150)
            let response = try await client.execute(request)
            let consumer = RecordingConsumer { call in call == 2 ? .pause : .proceed }
            var pauses = 0
            var deliveredWhileHeld = -1
            try await response.body.consume(consumer, whenPaused: {
                pauses += 1
                let before = consumer.snapshot.calls
                try? await Task.sleep(for: .milliseconds(400))
                deliveredWhileHeld = consumer.snapshot.calls - before
            })
            #expect(pauses == 1)
            #expect(deliveredWhileHeld == 0, "the transfer delivered while held")
            let events = sseEvents(consumer.snapshot.bytes)
            #expect(events.last == "[DONE]")
            #expect(try contentDeltas(events).count == 40)
        }
    }

    @Test func cancellingTheConsumingTaskAbortsTheTransfer() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "1000", "x-mock-chunk-delay-ms": "20"])
            let response = try await client.execute(request)
            let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
            let consumer = RecordingConsumer { call in
                if call == 3 { startedContinuation.yield() }
                return .proceed
            }
            let task = Task { try await response.body.consume(consumer, whenPaused: {}) }
            for await _ in started { break }
            let cancelledAt = ContinuousClock.now
            task.cancel()
            let result = await task.result
            #expect(ContinuousClock.now - cancelledAt < .seconds(3))
            #expect { try result.get() } throws: { ($0 as? HTTPClientError)?.code == .cancelled }
            // No call after the cancel returned, and the server sees the client go away.
            let calls = consumer.snapshot.calls
            try await eventually { provider.stats.snapshot.abandonedStreams == 1 && provider.stats.snapshot.openConnections == 0 }
            #expect(consumer.snapshot.calls == calls)
        }
    }

    @Test func aFailedTransferEndsTheConsumptionWithItsErrorAfterItsChunks() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-fail-after-chunks": "2"])
            let consumer = RecordingConsumer()
            let error = await #expect(throws: HTTPClientError.self) {
                try await client.execute(request).body.consume(consumer, whenPaused: {})
            }
            #expect(error?.code == .transfer)
            let deltas = try contentDeltas(sseEvents(consumer.snapshot.bytes))
            #expect(deltas.count == 2, "the chunks before the failure were consumed")
        }
    }

    @Test func stopAbortsTheTransfer() async throws {
        try await withProvider { client, provider in
            let request = chatRequest(provider, stream: true, headers: ["x-mock-chunks": "1000", "x-mock-chunk-delay-ms": "20"])
            let consumer = RecordingConsumer { _ in .stop }
            await #expect(throws: HTTPClientError.self) {
                try await client.execute(request).body.consume(consumer, whenPaused: {})
            }
            #expect(consumer.snapshot.calls == 1)
            try await eventually { provider.stats.snapshot.abandonedStreams == 1 && provider.stats.snapshot.openConnections == 0 }
        }
    }

    // MARK: Secrets

    /// Request headers carry API keys: however headers or a request are printed (log
    /// interpolation, `print`, `dump`), the names show and the values never do.
    @Test func headersAndRequestsPrintHeaderNamesOnly() {
        let secret = "sk-test-0123456789abcdefSECRET"
        let headers: HTTPHeaders = ["authorization": "Bearer \(secret)", "x-api-key": secret, "content-type": "application/json"]
        let request = CurlRequest(url: "https://api.example.com/v1/chat/completions", headers: headers, body: Array("{}".utf8))
        var dumped = ""
        dump(headers, to: &dumped)
        dump(request, to: &dumped)
        let printed = [
            headers.description, headers.debugDescription, "\(headers)", String(describing: headers), String(reflecting: headers),
            request.description, request.debugDescription, "\(request)", String(reflecting: request), dumped,
        ]
        for text in printed {
            #expect(!text.contains(secret) && !text.contains("application/json"), "a header value was printed: \(text)")
        }
        #expect(headers.description == "[authorization, x-api-key, content-type]")
        #expect(dumped.contains("authorization") && dumped.contains("x-api-key"))
    }

    /// A URL can carry secrets too (user info, a key in the query): a request prints its
    /// scheme, host and path only, and a URL that is not absolute http(s) prints as invalid.
    @Test func requestsPrintTheirURLWithoutUserInfoOrQuery() {
        func printed(_ url: String) -> String { CurlRequest(method: "GET", url: url).description }
        #expect(printed("HTTPS://user:pw@api.example.com:8443/v1/chat?key=secret#top")
            == "GET HTTPS://api.example.com:8443/v1/chat (0 headers, 0 body bytes)")
        #expect(printed("http://a@b@host/p@q/r#x?y") == "GET http://host/p@q/r (0 headers, 0 body bytes)")
        #expect(printed("http://host?key=secret") == "GET http://host (0 headers, 0 body bytes)")
        #expect(printed("https://hôst.example/päth") == "GET https://hôst.example/päth (0 headers, 0 body bytes)")
        for invalid in ["ftp://host/", "host/path", "http:/host", "http://", "http://user@/path", "a:b://host", ""] {
            #expect(printed(invalid) == "GET <invalid url> (0 headers, 0 body bytes)", "\(invalid)")
        }
    }

    // MARK: Load

    @Test func twoHundredConcurrentStreams() async throws {
        try await withProvider { client, provider in
            let start = ContinuousClock.now
            let counts = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let request = chatRequest(provider, stream: true, content: "request \(index)", headers: ["x-mock-chunks": "20", "x-mock-chunk-delay-ms": "10"])
                        let events = sseEvents(try await client.execute(request).body.collect())
                        #expect(events.last == "[DONE]")
                        return try contentDeltas(events).count
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(counts.count == 200)
            #expect(counts.allSatisfy { $0 == 20 })
            // The server counts a stream when its handler returns, just after the last byte.
            try await eventually { provider.stats.snapshot.completedStreams == 200 } _: { "\(provider.stats.snapshot)" }
            // Concurrent, not serial: serial would take 200 × 190 ms.
            #expect(ContinuousClock.now - start < .seconds(15))
        }
    }
}

// MARK: Helpers

private let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    return logger
}()

/// Runs `body` with a fresh client and a mock provider on a free loopback port.
private func withProvider(_ body: (CurlClient, MockProviderServer.Running) async throws -> Void) async throws {
    let client = CurlClient(logger: quietLogger)
    defer { client.shutdown() }
    try await MockProviderServer.withRunning(logger: quietLogger) { provider in
        try await body(client, provider)
    }
}

private func chatRequest(
    _ provider: MockProviderServer.Running,
    stream: Bool = false,
    model: String = "mock",
    content: String = "Who are you?",
    includeUsage: Bool = false,
    headers: [String: String] = [:]
) -> CurlRequest {
    var json: [String: Any] = ["model": model, "messages": [["role": "user", "content": content]], "stream": stream]
    if includeUsage { json["stream_options"] = ["include_usage": true] }
    var fields: HTTPHeaders = ["content-type": "application/json", "authorization": "Bearer sk-test"]
    for (name, value) in headers.sorted(by: { $0.key < $1.key }) { fields.add(name: name, value: value) }
    let body = try! JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
    return CurlRequest(url: provider.baseURL + "/chat/completions", headers: fields, body: Array(body), totalTimeout: .seconds(30))
}

/// The `data:` payloads of an SSE body.
private func sseEvents(_ body: [UInt8]) -> [String] {
    String(decoding: body, as: UTF8.self)
        .split(separator: "\n\n")
        .compactMap { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : nil }
}

/// The content deltas of the chunks among `events`.
private func contentDeltas(_ events: [String]) throws -> [String] {
    try events.filter { $0 != "[DONE]" }.compactMap { event in
        let chunk = try jsonObject(Array(event.utf8))
        let delta = (chunk["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any]
        guard let content = delta?["content"] as? String, !content.isEmpty else { return nil }
        return content
    }
}

private func jsonObject(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

/// A body consumer that keeps what it was given, how often and on which threads, and
/// answers what `answer` says for each call (numbered from 1).
private final class RecordingConsumer: HTTPBodyConsumer {
    struct Seen {
        var bytes: [UInt8] = []
        var calls = 0
        var threads: Set<UInt> = []
    }

    private let seen = Mutex(Seen())
    private let answer: @Sendable (Int) -> BodyDisposition

    init(answer: @escaping @Sendable (Int) -> BodyDisposition = { _ in .proceed }) {
        self.answer = answer
    }

    var snapshot: Seen { seen.withLock { $0 } }

    func receive(_ bytes: UnsafeRawBufferPointer) -> BodyDisposition {
        let call = seen.withLock { seen in
            seen.bytes += bytes
            seen.calls += 1
            seen.threads.insert(UInt(pthread_self()))
            return seen.calls
        }
        return answer(call)
    }
}

/// Polls `condition` every 10 ms for up to `timeout`.
private func eventually(
    timeout: Duration = .seconds(2),
    _ condition: () -> Bool,
    _ state: () -> String = { "" },
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(timeout) \(state())", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A loopback port that nothing listens on: bound, then closed.
private func closedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    try #require(fd >= 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    try #require(bound)
    return Int(UInt16(bigEndian: address.sin_port))
}
