import Foundation
import SluiceCore
@testable import SluiceWorker
import Synchronization
import Testing

/// Which job a cancel stops: the id, the tenant and the submission it names, for the
/// event TTL after it was asked. No servers needed.
struct CancelRegistryTests {
    final class Clock: Sendable {
        let now = Mutex(1_000_000.0)
        func advance(_ seconds: Double) { now.withLock { $0 += seconds } }
        var read: @Sendable () -> Double { { self.now.withLock { $0 } } }
    }

    static func job(_ id: String, tenant: String, submission: String? = nil) -> Job {
        Job(id: id, request: .chatInput("x"), tenant: tenant, submissionID: submission)
    }

    @Test func aCancelStopsOnlyTheTenantAndSubmissionItNames() {
        let clock = Clock()
        let registry = CancelRegistry(ttlSeconds: 60, now: clock.read)
        registry.cancel(CancelRequest(jobID: "x", tenant: "b", submissionID: "s-b", at: clock.read()))
        #expect(registry.isCancelled(Self.job("x", tenant: "b", submission: "s-b")))
        #expect(!registry.isCancelled(Self.job("x", tenant: "a", submission: "s-b")), "another tenant's job with that id")
        #expect(!registry.isCancelled(Self.job("x", tenant: "b", submission: "s-later")), "a later submission of the id")
        #expect(!registry.isCancelled(Self.job("y", tenant: "b", submission: "s-b")))

        // A cancel for a job from Kafka names no submission: the tenant's job of that id.
        registry.cancel(CancelRequest(jobID: "k", tenant: "a", at: clock.read()))
        #expect(registry.isCancelled(Self.job("k", tenant: "a")))
        #expect(!registry.isCancelled(Self.job("k", tenant: "b")))
        // A Kafka client's cancel that names no tenant: the id, whoever's.
        registry.cancel(CancelRequest(jobID: "any", at: clock.read()))
        #expect(registry.isCancelled(Self.job("any", tenant: "a", submission: "s")))
    }

    @Test func aCancelExpiresWithTheEventTTL() {
        let clock = Clock()
        let registry = CancelRegistry(ttlSeconds: 60, now: clock.read)
        registry.cancel(CancelRequest(jobID: "x", tenant: "a", at: clock.read()))
        clock.advance(59)
        #expect(registry.isCancelled(Self.job("x", tenant: "a")))
        clock.advance(2)
        #expect(!registry.isCancelled(Self.job("x", tenant: "a")), "a job of that id after the cancel's TTL runs")
        // A cancel replayed from the topic that is already older than the TTL is ignored.
        #expect(!registry.cancel(CancelRequest(jobID: "old", tenant: "a", at: clock.read() - 61)))
        #expect(!registry.isCancelled(Self.job("old", tenant: "a")))
    }

    @Test func aRunningJobIsStoppedOnlyByItsOwnCancel() {
        let clock = Clock()
        let registry = CancelRegistry(ttlSeconds: 60, now: clock.read)
        let stopped = Mutex<[String]>([])
        let a = Self.job("x", tenant: "a", submission: "s-a")
        let token = registry.register(a) { stopped.withLock { $0.append("a") } }
        #expect(!registry.cancel(CancelRequest(jobID: "x", tenant: "b", at: clock.read())))
        #expect(!registry.cancel(CancelRequest(jobID: "x", tenant: "a", submissionID: "s-other", at: clock.read())))
        #expect(stopped.withLock { $0 }.isEmpty)
        #expect(registry.cancel(CancelRequest(jobID: "x", tenant: "a", submissionID: "s-a", at: clock.read())))
        #expect(stopped.withLock { $0 } == ["a"])
        registry.unregister("x", token: token)
    }

    @Test func theGatewaysCancelMessageParsesBack() throws {
        let bytes = CancelRequest.message(jobID: "j", tenant: "t", submissionID: "s")
        let parsed = try #require(CancelRequest.parse(bytes, key: "j", timestampMs: 5_000, receivedAt: 9))
        #expect(parsed == CancelRequest(jobID: "j", tenant: "t", submissionID: "s", at: 5))
        let bare = try #require(CancelRequest.parse(Array(#"{"type":"cancel"}"#.utf8), key: "k", timestampMs: nil, receivedAt: 9))
        #expect(bare == CancelRequest(jobID: "k", at: 9))
        #expect(CancelRequest.parse(Array(#"{"type":"pause","job_id":"j"}"#.utf8), key: "j", timestampMs: nil, receivedAt: 9) == nil)
    }
}
