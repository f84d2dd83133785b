import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceHTTPClient
import SluiceKafka
import SluiceMockProvider
import SluiceTelemetry
import Synchronization
import Testing

/// One trace per job: the client's `traceparent` (or a new trace) through the gateway's
/// submission, the job's Kafka record, the worker's run and its provider attempt, to the
/// result record, with the spans exported over OTLP to a receiver in the test. With
/// tracing off the record's context still passes on; hostile record headers never do.
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct TracingTests {
    static let user: JSONValue = [["role": "user", "content": "Tell me a joke"]]

    @Test func aJobIsOneTraceFromTheHTTPRequestToTheProviderAndTheResult() async throws {
        try await OTLPReceiver.withTracing { receiver, tracers in
            let logs = CapturedLogs()
            try await TestStack.with(mock: MockBehavior(chunks: 5), gateway: true, logger: logs.logger(), tracers: tracers) { stack in
                let clientTrace = Self.randomHex(16)
                let clientSpan = Self.randomHex(8)
                let submitted = try await stack.call("POST", "/v1/jobs", headers: [
                    "traceparent": "00-\(clientTrace)-\(clientSpan)-01", "tracestate": "rojo=00f067aa0ba902b7",
                ], json: ["model": "default", "messages": Self.user])
                #expect(submitted.status == 202)
                let jobID = try #require(submitted.json["id"]?.stringValue)
                let results = try await stack.waitForResults(1)
                #expect(results[jobID]?.status == .succeeded)

                let spans = try await receiver.waitForTrace(clientTrace, containing: "run job")
                // A span per submission, per job and per attempt: none per chunk.
                #expect(spans.map(\.name).sorted() == ["provider attempt", "run job", "submit job"])
                let submit = try #require(spans.first { $0.name == "submit job" })
                let run = try #require(spans.first { $0.name == "run job" })
                let attempt = try #require(spans.first { $0.name == "provider attempt" })

                #expect(submit.service == "sluice-gateway")
                #expect(submit.parentSpanID == clientSpan)
                #expect(submit.kind == OTLPReceiver.Span.producer)
                #expect(submit.attributes["job_id"] == .string(jobID))
                #expect(submit.attributes["tenant"] == "default")

                #expect(run.service == "sluice-worker")
                #expect(run.parentSpanID == submit.spanID)
                #expect(run.kind == OTLPReceiver.Span.consumer)
                #expect(run.attributes["job_id"] == .string(jobID))
                #expect(run.attributes["provider"] == "mock")
                #expect(run.attributes["status"] == "succeeded")

                #expect(attempt.service == "sluice-worker")
                #expect(attempt.parentSpanID == run.spanID)
                #expect(attempt.kind == OTLPReceiver.Span.client)
                #expect(attempt.attributes["provider"] == "mock")
                #expect(attempt.attributes["model"] == "mock-1")
                #expect(attempt.events == ["first token"])
                #expect(spans.allSatisfy { $0.statusCode != OTLPReceiver.Span.error })

                // The provider was sent the attempt's context; the result record carries
                // the job's, with the client's tracestate.
                #expect(stack.mock.stats.snapshot.lastTraceparent == "00-\(clientTrace)-\(attempt.spanID)-01")
                let record = try #require(stack.results.all.last { $0.keyString == jobID })
                let carried = try #require(Self.traceHeaders(record))
                #expect(carried.traceparent == "00-\(clientTrace)-\(run.spanID)-01")
                #expect(carried.tracestate == "rojo=00f067aa0ba902b7")

                // With a malformed traceparent the submission starts a trace, and the job
                // continues it; a failure marks the spans, and the job's logs name the trace.
                let fresh = try await stack.call("POST", "/v1/jobs", headers: ["traceparent": "00-not-a-trace-01"],
                                                 json: ["model": "mock/mock-status=400", "messages": Self.user])
                let freshID = try #require(fresh.json["id"]?.stringValue)
                let both = try await stack.waitForResults(2)
                #expect(both[freshID]?.status == .failed)
                let freshRecord = try #require(stack.results.all.last { $0.keyString == freshID })
                let freshContext = try #require(Self.traceHeaders(freshRecord))
                #expect(freshContext.traceID != clientTrace)
                let freshSpans = try await receiver.waitForTrace(freshContext.traceID, containing: "run job")
                let freshSubmit = try #require(freshSpans.first { $0.name == "submit job" })
                let freshRun = try #require(freshSpans.first { $0.name == "run job" })
                let freshAttempt = try #require(freshSpans.first { $0.name == "provider attempt" })
                #expect(freshSubmit.parentSpanID.isEmpty)
                #expect(freshRun.parentSpanID == freshSubmit.spanID)
                #expect(freshAttempt.parentSpanID == freshRun.spanID)
                #expect(freshRun.statusCode == OTLPReceiver.Span.error)
                #expect(freshRun.attributes["status"] == "failed")
                #expect(freshAttempt.statusCode == OTLPReceiver.Span.error)
                #expect(freshAttempt.attributes["http.response.status_code"] == "400")
                #expect(freshAttempt.events.isEmpty)
                #expect(logs.all.contains { $0.contains(freshID) && $0.contains("trace_id") && $0.contains(freshContext.traceID) })
            }
        }
    }

    @Test func withTracingOffARecordsContextPassesOnAndHostileHeadersAreIgnored() async throws {
        try await TestStack.with(mock: MockBehavior(chunks: 2)) { stack in
            let requests = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.requestsTopic,
                                              properties: stack.config.kafka.consumerProperties, logger: TestServices.logger)
            let dlq = try TopicCollector(brokers: stack.config.kafka.brokers, topic: stack.config.kafka.dlqTopic,
                                         properties: stack.config.kafka.consumerProperties, logger: TestServices.logger)
            defer {
                requests.close()
                dlq.close()
            }
            let valid = "00-\(Self.randomHex(16))-\(Self.randomHex(8))-01"
            let job: JSONValue = ["id": "traced", "model": "default", "messages": Self.user]
            try await stack.producer.send(topic: stack.config.kafka.requestsTopic, key: "traced", value: try JSON.encode(job),
                                          headers: [KafkaHeader(name: "traceparent", value: valid)])
            let first = try await stack.waitForResults(1)
            #expect(first["traced"]?.status == .succeeded)
            #expect(stack.mock.stats.snapshot.lastTraceparent == valid)
            let passed = try #require(stack.results.all.last { $0.keyString == "traced" })
            #expect(Self.traceHeaders(passed)?.traceparent == valid)

            // Hostile headers: more than a consumer reads, an oversized and a malformed
            // traceparent, a value past the bound, a null value, a long name.
            var hostile = (0..<40).map { KafkaHeader(name: "h\($0)", value: Array("v\($0)".utf8)) }
            hostile.insert(KafkaHeader(name: "traceparent", value: [UInt8](repeating: 0x61, count: 100)), at: 0)
            hostile.insert(KafkaHeader(name: "traceparent", value: Array("00-\(Self.randomHex(16))-\(Self.randomHex(8))-0\u{0}".utf8)), at: 1)
            hostile.insert(KafkaHeader(name: "tracestate", value: [UInt8](repeating: 0xFF, count: KafkaHeader.maxValueBytes + 1)), at: 2)
            hostile.insert(KafkaHeader(name: "empty", value: nil), at: 3)
            hostile.insert(KafkaHeader(name: String(repeating: "n", count: KafkaHeader.maxNameBytes + 1), value: [1]), at: 4)
            let other: JSONValue = ["id": "hostile", "model": "default", "messages": Self.user]
            try await stack.producer.send(topic: stack.config.kafka.requestsTopic, key: "hostile", value: try JSON.encode(other),
                                          headers: hostile)
            let both = try await stack.waitForResults(2)
            #expect(both["hostile"]?.status == .succeeded)
            let unpassed = try #require(stack.results.all.last { $0.keyString == "hostile" })
            #expect(unpassed.headers.isEmpty)

            // What the consumer kept of them: the first 32 within bounds, in order.
            let read = try #require(try await requests.waitForDistinctKeys(2, timeout: .seconds(30)).first { $0.keyString == "hostile" })
            #expect(read.headers.count == KafkaHeader.maxCount)
            #expect(Array(read.headers.prefix(3)) == [hostile[0], hostile[1], hostile[3]])
            #expect(read.headers.dropFirst(3).map(\.name) == (0..<29).map { "h\($0)" })

            // A message that is no job goes to the DLQ with the context it came with.
            try await stack.producer.send(topic: stack.config.kafka.requestsTopic, key: [UInt8]?.none, value: Array("not json".utf8),
                                          headers: [KafkaHeader(name: "traceparent", value: valid)])
            let dead = try #require(try await dlq.waitForDistinctKeys(1, timeout: .seconds(30)).first)
            #expect(Self.traceHeaders(dead)?.traceparent == valid)
        }
    }

    static func traceHeaders(_ message: KafkaMessage) -> TraceHeaders? {
        TraceHeaders(fields: message.headers.compactMap { h in h.value.map { (name: h.name, value: $0) } })
    }

    static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 1...255)) }.joined()
    }
}

/// A minimal OTLP/HTTP receiver (`POST /v1/traces`, JSON encoding) that keeps every
/// span it is sent.
final class OTLPReceiver: Sendable {
    struct Span: Sendable {
        // OTLP's SpanKind and StatusCode numbers.
        static let client = 3, producer = 4, consumer = 5
        static let error = 2

        var service: String
        var name: String
        var traceID: String
        var spanID: String
        /// Empty for a root span.
        var parentSpanID: String
        var kind: Int
        var attributes: [String: JSONValue]
        var events: [String]
        var statusCode: Int
    }

    private let received = Mutex<[Span]>([])

    var spans: [Span] { received.withLock { $0 } }

    /// Runs a receiver, and a gateway's and a worker's tracer exporting to it (OTLP/JSON,
    /// batches every 100 ms), for `body`; the tracers flush before the receiver stops.
    static func withTracing(_ body: (OTLPReceiver, (gateway: SluiceTracer, worker: SluiceTracer)) async throws -> Void) async throws {
        let receiver = OTLPReceiver()
        let logger = TestServices.logger
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 16 << 20)
            receiver.ingest(Array(bytes.readableBytesView))
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        let port = PortBox()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { port.set($0.localAddress?.port ?? 0) }, logger: logger)
        try await withServices([app], logger: logger) {
            var config = SluiceConfig.Tracing()
            config.otlpEndpoint = "http://127.0.0.1:\(try await port.wait())"
            config.otlpProtocol = .httpJSON
            let gateway = try TracingBackend.make(config, serviceName: "sluice-gateway", logger: logger, exportDelay: .milliseconds(100))
            let worker = try TracingBackend.make(config, serviceName: "sluice-worker", logger: logger, exportDelay: .milliseconds(100))
            try await withServices([gateway.service, worker.service].compactMap { $0 }, logger: logger) {
                try await body(receiver, (gateway.tracer, worker.tracer))
            }
        }
    }

    /// The spans of a trace (32 hex digits), once one named `name` has arrived.
    func waitForTrace(_ traceID: String, containing name: String, timeout: Duration = .seconds(20)) async throws -> [Span] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let trace = spans.filter { $0.traceID == traceID }
            if trace.contains(where: { $0.name == name }) { return trace }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("no span \"\(name)\" of trace \(traceID) arrived within \(timeout); got \(spans.map { ($0.name, $0.traceID) })")
    }

    private func ingest(_ body: [UInt8]) {
        guard let request = try? JSON.decode(JSONValue.self, from: body) else {
            Issue.record("the OTLP exporter sent a body that is not JSON")
            return
        }
        var out: [Span] = []
        for resource in request["resourceSpans"]?.arrayValue ?? [] {
            let service = Self.attributes(resource["resource"]?["attributes"])["service.name"]?.stringValue ?? ""
            for scope in resource["scopeSpans"]?.arrayValue ?? [] {
                for span in scope["spans"]?.arrayValue ?? [] {
                    out.append(Span(
                        service: service, name: span["name"]?.stringValue ?? "",
                        traceID: Self.hex(span["traceId"]), spanID: Self.hex(span["spanId"]), parentSpanID: Self.hex(span["parentSpanId"]),
                        kind: span["kind"]?.intValue ?? 0, attributes: Self.attributes(span["attributes"]),
                        events: span["events"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? [],
                        statusCode: span["status"]?["code"]?.intValue ?? 0))
                }
            }
        }
        received.withLock { $0 += out }
    }

    /// OTLP/JSON's `[{key, value: {stringValue | intValue | …}}]` as a dictionary.
    private static func attributes(_ list: JSONValue?) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for item in list?.arrayValue ?? [] {
            guard let key = item["key"]?.stringValue, let value = item["value"]?.objectValue?.values.first else { continue }
            out[key] = value
        }
        return out
    }

    /// Ids are bytes, which protobuf's JSON mapping writes in base64.
    private static func hex(_ value: JSONValue?) -> String {
        guard let text = value?.stringValue, let data = Data(base64Encoded: text) else { return "" }
        return data.map { String(format: "%02x", $0) }.joined()
    }
}

/// Runs `services` in a group of their own for `body`, then shuts them down (in reverse
/// order) and waits for them.
func withServices(_ services: [any Service], logger: Logger, _ body: () async throws -> Void) async throws {
    let group = ServiceGroup(configuration: .init(services: services, logger: logger))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        do {
            try await body()
        } catch {
            await group.triggerGracefulShutdown()
            try? await tasks.waitForAll()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
}
