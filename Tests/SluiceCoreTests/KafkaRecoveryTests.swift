import Logging
@testable import SluiceKafka
import Synchronization
import Testing

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let base = ContinuousClock.now
    private let offset = Mutex(Duration.zero)
    func advance(_ d: Duration) { offset.withLock { $0 += d } }
    var now: @Sendable () -> ContinuousClock.Instant { { [self] in base + offset.withLock { $0 } } }
}

struct LogThrottleTests {
    @Test func theFirstIsLoggedThenOneSummaryPerInterval() {
        let clock = ManualClock()
        let throttle = LogThrottle(interval: .seconds(30), now: clock.now)
        #expect(throttle.admit("refused") == .first)
        for _ in 0..<50 { #expect(throttle.admit("refused") == .suppressed) }
        #expect(throttle.admit("other") == .first, "keys are counted apart")
        clock.advance(.seconds(30))
        #expect(throttle.admit("refused") == .summary(count: 51))
        #expect(throttle.admit("refused") == .suppressed)
        clock.advance(.seconds(31))
        #expect(throttle.admit("refused") == .summary(count: 2))
        clock.advance(.seconds(31))
        #expect(throttle.admit("refused") == .first, "a lone occurrence after a quiet interval is a first one")
        throttle.reset("refused")
        #expect(throttle.admit("refused") == .first)
    }

    @Test func anOutageIsAFirstLineSummariesAndALastLine() {
        let clock = ManualClock()
        let outage = BrokerOutage(interval: .seconds(30), now: clock.now)
        #expect(outage.answered() == nil, "no outage, nothing to end")
        #expect(!outage.probeDue())
        #expect(outage.failed("Connection refused") == .started("Connection refused"))
        #expect(outage.isDown)
        var lines = 1
        for second in 1...75 {
            clock.advance(.seconds(1))
            // librdkafka reports each connection of each client, several a second.
            for _ in 0..<4 where outage.failed("Connection refused (\(second))") != nil { lines += 1 }
        }
        #expect(lines == 3, "the start, then a summary at 30 s and at 60 s")
        #expect(outage.probeDue())
        #expect(!outage.probeDue(), "at most one probe a second")
        clock.advance(.seconds(5))
        #expect(outage.answered() == .ended(seconds: 80, errors: 301))
        #expect(!outage.isDown)
        #expect(outage.answered() == nil)
    }
}

/// librdkafka's mock cluster (`test.mock.num.brokers`): no server needed.
struct ProducerRecoveryTests {
    static let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    @Test(.timeLimit(.minutes(1)))
    func aProducerReplacesItselfAfterAFatalErrorAndSendsAgain() async throws {
        // Idempotent here on purpose: that is where librdkafka raises fatal errors.
        let producer = try KafkaProducer(brokers: "", properties: ["test.mock.num.brokers": "1", "enable.idempotence": "true"],
                                         logger: Self.logger)
        defer { producer.shutdown(timeoutMs: 1_000) }
        try await producer.send(topic: "results", key: "a", value: Array("before".utf8))

        producer.injectFatalError()
        // A fatal producer fails every send; the replacement takes one poll interval. A
        // sender retries, as the worker's `deliver` does.
        var failures = 0
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            do {
                try await producer.send(topic: "results", key: "b", value: Array("after".utf8))
                break
            } catch {
                failures += 1
                try #require(ContinuousClock.now < deadline, "the producer never recovered: \(error)")
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(failures < 20)
        try await producer.send(topic: "results", key: "c", value: Array("still".utf8))
    }
}
