import Foundation
import SluiceCore
import SluiceGateway
import SluiceHTTPClient
import SluiceRedis
import Testing

/// `GET /v1/jobs/{id}/events` readers are bounded: per tenant in number, each in memory
/// (a paged replay, a bounded live buffer: a reader too far behind is cut and resumes
/// with `Last-Event-ID`).
@Suite(.needsServices, .timeLimit(.minutes(3)))
struct EventReaderLimitTests {
    @Test func aTenantHoldsAtMostItsLimitOfEventStreams() async throws {
        let keys: [SluiceConfig.APIKey] = [.init(key: "k-alpha", tenant: "alpha"), .init(key: "k-beta", tenant: "beta")]
        // No worker: the jobs stay queued, so their streams stay open.
        try await TestStack.with(gateway: true, worker: false, configure: {
            $0.gateway.apiKeys = keys
            $0.gateway.maxReadersPerTenant = 2
        }) { stack in
            let alpha: HTTPHeaders = ["authorization": "Bearer k-alpha"]
            let beta: HTTPHeaders = ["authorization": "Bearer k-beta"]
            let alphaJob = try #require(try await stack.call("POST", "/v1/jobs", headers: alpha, json: ["model": "default", "chat_input": "a"]).json["id"]?.stringValue)
            let betaJob = try #require(try await stack.call("POST", "/v1/jobs", headers: beta, json: ["model": "default", "chat_input": "b"]).json["id"]?.stringValue)

            let first = try await stack.openStream("/v1/jobs/\(alphaJob)/events", headers: alpha)
            let second = try await stack.openStream("/v1/jobs/\(alphaJob)/events", headers: alpha)
            #expect(first.status == 200 && second.status == 200)

            let refused = try await stack.call("GET", "/v1/jobs/\(alphaJob)/events", headers: alpha)
            #expect(refused.status == 429)
            #expect(refused.headers["retry-after"] == "5")
            #expect(refused.json["error"]?["code"] == "too_many_readers")
            let message = refused.json["error"]?["message"]?.stringValue ?? ""
            #expect(message.contains("gateway.max_readers_per_tenant") && message.contains("2"), "\(message)")
            #expect(try await stack.metric("sluice_gateway_sse_readers_refused_total") == 1)

            // Another tenant has its own count; other routes are not limited.
            let other = try await stack.openStream("/v1/jobs/\(betaJob)/events", headers: beta)
            #expect(other.status == 200)
            #expect(try await stack.call("GET", "/v1/jobs/\(alphaJob)", headers: alpha).status == 200)

            // A reader that leaves gives its place back.
            first.close()
            var reopened: EventStreamReader?
            try await stack.eventually("alpha may open a stream again", timeout: .seconds(5)) {
                let attempt = try await stack.openStream("/v1/jobs/\(alphaJob)/events", headers: alpha)
                if attempt.status == 200 {
                    reopened = attempt
                    return true
                }
                attempt.close()
                return false
            }
            #expect(reopened != nil)
            reopened?.close()
            second.close()
            other.close()
        }
    }

    @Test func aLongFinishedStreamIsReplayedWhole() async throws {
        let chunks = 700
        try await TestStack.with(mock: .init(chunks: chunks), gateway: true) { stack in
            let id = try #require(try await stack.call("POST", "/v1/jobs", json: ["model": "default", "chat_input": "long"]).json["id"]?.stringValue)
            _ = try await stack.waitForResults(1)
            let all = try await stack.call("GET", "/v1/jobs/\(id)/events").events
            #expect(all.count > chunks)
            #expect(all.map(\.id) == (1...all.count).map { "\($0)" }, "every page, in order, no gap")
            #expect(all.last?.event == "chat_finished")
            let rest = try await stack.call("GET", "/v1/jobs/\(id)/events", headers: ["last-event-id": "300"]).events
            #expect(rest.map(\.id) == (301...all.count).map { "\($0)" })
        }
    }

    /// The client stops reading; the job goes on writing (large events, so the sockets
    /// fill and the gateway's writes wait). The reader falls more than
    /// `reader_buffer_events` behind and is cut; resuming with `Last-Event-ID` gets the
    /// rest with no gap.
    @Test func aReaderTooFarBehindIsCutAndResumes() async throws {
        try await TestStack.with(gateway: true, worker: false, configure: { $0.gateway.readerBufferEvents = 16 }) { stack in
            let id = try #require(try await stack.call("POST", "/v1/jobs", json: ["model": "default", "chat_input": "slow reader"]).json["id"]?.stringValue)
            let key = RedisKeys.events(id)
            // Stands in for the worker: every event stored, then published.
            let padding = String(repeating: "x", count: 64 * 1024)
            func publish(_ seq: Int, _ event: EventName) {
                let data = event == .chatFinished ? Array(#"{"status":"succeeded"}"#.utf8) : Array(#"{"pad":"\#(padding)"}"#.utf8)
                let envelope = EventEnvelope.encode(jobID: id, seq: seq, event: event, data: data, ts: 1)
                stack.redis.send(RedisCommand([Array("XADD".utf8), Array(key.utf8), Array("0-\(seq)".utf8), Array("e".utf8), envelope]))
                stack.redis.send(RedisCommand([Array("PUBLISH".utf8), Array(RedisKeys.channel(id).utf8), envelope]))
            }
            defer { stack.redis.send(RedisCommand("DEL", key)) }

            let reader = try await stack.openStream("/v1/jobs/\(id)/events")
            #expect(reader.status == 200)
            publish(1, .chatStarted)
            let firstEvent = try await reader.next()
            #expect(firstEvent?.id == "1")

            // Far more than the sockets between the two hold, while the client reads nothing.
            let total = 600
            for seq in 2..<total { publish(seq, .chunk) }
            publish(total, .chatFinished)
            _ = try await stack.redis.execute(RedisCommand("PING"))
            try await stack.eventually("the slow reader is cut", timeout: .seconds(20)) {
                try await stack.subscribers(ofJob: id) == 0
            }

            // What the gateway had written arrives, then the stream ends early.
            var seen = [try #require(firstEvent)]
            while let event = try await reader.next() { seen.append(event) }
            #expect(seen.count < total, "cut before the end")
            #expect(seen.last?.event != "chat_finished")
            #expect(try await stack.metric("sluice_gateway_sse_readers_cut_total") == 1)

            let resumed = try await stack.openStream("/v1/jobs/\(id)/events", headers: ["last-event-id": try #require(seen.last?.id)])
            let rest = try await resumed.rest()
            let all = seen + rest
            #expect(all.map(\.id) == (1...total).map { "\($0)" }, "no gap, no repeat")
            #expect(all.last?.event == "chat_finished")
        }
    }
}
