import Synchronization
import CRdKafka
import Logging

/// Builds an `rd_kafka_conf_t` from string properties. The returned handle is owned by
/// the caller until handed to `rd_kafka_new`, which takes it over.
enum RDKafkaConfig {
    static func make(_ properties: [String: String]) throws -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError(.config, "rd_kafka_conf_new failed") }
        var errstr = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errstr, errstr.count)
            if result != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let reason = String(cString: errstr)
                throw KafkaError(.config, "Kafka property \"\(key)\": \(reason)")
            }
        }
        return conf
    }

    /// Produce errors that retrying the same message cannot cure (`KafkaError.isPermanent`).
    static let permanentProduceErrors: Set<Int32> = tooLargeProduceErrors.union([
        RD_KAFKA_RESP_ERR_INVALID_RECORD.rawValue,
        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED.rawValue,
        RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED.rawValue,
        // The topic name is not a valid one.
        RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION.rawValue,
    ])

    /// Produce errors that say the message (or its batch) is too large: librdkafka
    /// reports a message over `message.max.bytes` when it is enqueued, a broker one over
    /// the topic's `max.message.bytes` in the delivery report.
    static let tooLargeProduceErrors: Set<Int32> = [
        RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue,
        RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE.rawValue,
    ]

    static func errorString(_ err: rd_kafka_resp_err_t) -> String {
        String(cString: rd_kafka_err2str(err))
    }
}

/// What librdkafka's callbacks reach through `rd_kafka_opaque`: the client's logger and
/// its event handlers. Owned by the Swift client object, which outlives the C handle.
final class RDKafkaContext: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init, and the handler
    // closures are themselves @Sendable.
    let logger: Logger
    let onRebalance: (@Sendable (RDKafkaClient.Rebalance) -> Void)?
    /// The broker's answer to each commit, per partition: `true` when it took the offset.
    let onCommit: (@Sendable ([(TopicPartitionOffset, Bool)]) -> Void)?
    /// Each assigned partition's assignment generation, stamped on the messages fetched
    /// under it. Written by the rebalance callback, read by the poll loop: both on the
    /// consumer's poll thread, but the lock keeps it correct wherever they run.
    let assignments = Mutex(Assignments())
    /// Connection failures, collapsed into an outage's first line, summaries and last line.
    let outage = BrokerOutage()
    /// Every other repeating error, logged once per 30 s with a count.
    let errors = LogThrottle()
    /// Whether the owner wants fetching paused: applied to partitions as they are
    /// assigned, since whether librdkafka keeps a partition's pause across a rebalance
    /// differs between versions.
    /// Held while a pause or resume is applied, by `setPaused` and by the assign
    /// callback alike, so that neither applies a state the other has just replaced.
    let wantsPaused = Mutex<Bool>(false)

    init(logger: Logger, onRebalance: (@Sendable (RDKafkaClient.Rebalance) -> Void)? = nil,
         onCommit: (@Sendable ([(TopicPartitionOffset, Bool)]) -> Void)? = nil) {
        self.logger = logger
        self.onRebalance = onRebalance
        self.onCommit = onCommit
    }

    /// Partitions held and the generation each was assigned under.
    struct Assignments: Sendable {
        private var next: UInt64 = 1
        private var held: [TopicPartition: UInt64] = [:]

        /// Starts a new generation for `tps` and returns it.
        mutating func assign(_ tps: [TopicPartition]) -> UInt64 {
            let generation = next
            next &+= 1
            for tp in tps { held[tp] = generation }
            return generation
        }

        mutating func revoke(_ tps: [TopicPartition]) {
            for tp in tps { held[tp] = nil }
        }

        mutating func revokeAll() { held.removeAll() }

        /// 0 for a partition not held (its messages are refused downstream).
        func generation(of tp: TopicPartition) -> UInt64 { held[tp] ?? 0 }
    }

    /// Logs `message` unless the same `key` was logged less than 30 s ago; then a summary
    /// with the count.
    func warnThrottled(_ key: String, _ message: @autoclosure () -> String, metadata: Logger.Metadata? = nil) {
        switch errors.admit(key) {
        case .first: logger.warning("\(message())", metadata: metadata)
        case .summary(let count): logger.warning("\(message()) (\(count) times in the last \(errors.interval))", metadata: metadata)
        case .suppressed: break
        }
    }

    func connectionFailed(_ text: String) {
        if let report = outage.failed(text) { outage.log(report, to: logger) }
    }

    /// Called whenever a broker has answered (a delivery, a message, a probe).
    func brokerAnswered() {
        if let report = outage.answered() { outage.log(report, to: logger) }
    }

    static func from(_ rk: OpaquePointer?) -> RDKafkaContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<RDKafkaContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

/// For handles without a context (the admin client): errors are returned, not logged.
let rdkafkaQuietLogCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = { _, _, _, _ in }

/// librdkafka's log lines, routed into swift-log.
let rdkafkaLogCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafePointer<CChar>?) -> Void = {
    rk, level, facility, message in
    guard let context = RDKafkaContext.from(rk) else { return }
    let text = message.map { String(cString: $0) } ?? ""
    let fac = facility.map { String(cString: $0) } ?? ""
    var swiftLevel: Logger.Level = switch level {
    case 0...3: .error
    case 4: .warning
    case 5, 6: .info
    default: .debug
    }
    // Connection failures also reach the error callback, which logs them once; here
    // they would be logged a second time.
    if fac == "FAIL" || fac == "ERROR" { swiftLevel = .debug }
    context.logger.log(level: swiftLevel, "\(text)", metadata: ["rdkafka.facility": "\(fac)"])
}

/// Client-level errors (brokers down, authentication): logged, without flooding.
/// librdkafka recovers from these itself, retrying each connection with backoff and
/// reporting every failed attempt; they are collapsed into one outage (`BrokerOutage`).
/// The ones it cannot recover from are reported as fatal.
let rdkafkaErrorCallback: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void = {
    rk, err, reason, _ in
    guard let context = RDKafkaContext.from(rk) else { return }
    let text = reason.map { String(cString: $0) } ?? ""
    let code = rd_kafka_resp_err_t(rawValue: err)
    switch code {
    case RD_KAFKA_RESP_ERR__FATAL:
        context.logger.critical("fatal Kafka client error: \(text)")
    case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, RD_KAFKA_RESP_ERR__RESOLVE:
        context.connectionFailed(text)
    default:
        context.warnThrottled("error \(err)", "Kafka: \(text)", metadata: ["rdkafka.error": "\(RDKafkaConfig.errorString(code))"])
    }
}
