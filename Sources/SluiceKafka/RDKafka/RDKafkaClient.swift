import CRdKafka
import Foundation
import Logging
import Synchronization
import SluiceSupport

/// A topic, partition and offset: what a commit names.
public struct TopicPartitionOffset: Sendable, Hashable {
    public var topicPartition: TopicPartition
    public var offset: Int64

    public init(_ topicPartition: TopicPartition, offset: Int64) {
        self.topicPartition = topicPartition
        self.offset = offset
    }
}

/// The one owner of an `rd_kafka_t`. Every librdkafka call of the package goes through
/// this file and its siblings in `RDKafka/`; the public types above see no C type.
final class RDKafkaClient: @unchecked Sendable {
    // @unchecked: `handle` is set once in init and destroyed once in deinit; librdkafka's
    // API is thread-safe for everything called on it here.
    enum Kind { case producer, consumer }

    enum Rebalance: Sendable {
        case assigned([TopicPartition], generation: UInt64)
        case revoked([TopicPartition])
    }

    let handle: OpaquePointer
    let context: RDKafkaContext
    let kind: Kind

    init(kind: Kind, properties: [String: String], context: RDKafkaContext) throws {
        let conf = try RDKafkaConfig.make(properties)
        rd_kafka_conf_set_log_cb(conf, rdkafkaLogCallback)
        rd_kafka_conf_set_error_cb(conf, rdkafkaErrorCallback)
        // The context outlives the handle (this object owns both), so it is not retained.
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        switch kind {
        case .producer:
            rd_kafka_conf_set_dr_msg_cb(conf, deliveryCallback)
        case .consumer:
            rd_kafka_conf_set_rebalance_cb(conf, rebalanceCallback)
            rd_kafka_conf_set_offset_commit_cb(conf, offsetCommitCallback)
        }
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(kind == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(.client, "cannot create the Kafka client: \(String(cString: errstr))")
        }
        self.handle = rk
        self.context = context
        self.kind = kind
        if kind == .consumer { rd_kafka_poll_set_consumer(rk) }
    }

    deinit {
        rd_kafka_destroy(handle)
    }

    // MARK: Producer

    /// Enqueues a message; `promise` is resolved from the delivery report.
    func produce(topic: String, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader] = [], promise: DeliveryPromise) throws {
        let list = RDKafkaClient.makeHeaders(headers)
        let opaque = Unmanaged.passRetained(promise).toOpaque()
        let err: rd_kafka_resp_err_t = value.withUnsafeBytes { v in
            if let key {
                return key.withUnsafeBytes { k in
                    sluice_rd_kafka_produce(handle, topic, k.baseAddress, k.count, v.baseAddress, v.count, list, 0, opaque)
                }
            }
            return sluice_rd_kafka_produce(handle, topic, nil, 0, v.baseAddress, v.count, list, 0, opaque)
        }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // Not taken: the list is still ours.
            if let list { rd_kafka_headers_destroy(list) }
            Unmanaged<DeliveryPromise>.fromOpaque(opaque).release()
            throw KafkaError(.produce, "cannot enqueue a message for \(topic): \(RDKafkaConfig.errorString(err))", rdkafkaError: err.rawValue)
        }
    }

    /// A librdkafka header list (values copied), nil for none.
    private static func makeHeaders(_ headers: [KafkaHeader]) -> OpaquePointer? {
        guard !headers.isEmpty, let list = rd_kafka_headers_new(headers.count) else { return nil }
        for h in headers {
            if let value = h.value {
                value.withUnsafeBytes { v in _ = rd_kafka_header_add(list, h.name, -1, v.baseAddress, v.count) }
            } else {
                rd_kafka_header_add(list, h.name, -1, nil, 0)
            }
        }
        return list
    }

    /// A consumed message's headers, within ``KafkaHeader``'s bounds.
    private static func readHeaders(_ m: UnsafeMutablePointer<rd_kafka_message_t>) -> [KafkaHeader] {
        var list: OpaquePointer?
        guard rd_kafka_message_headers(m, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        var out: [KafkaHeader] = []
        var index = 0
        var namePointer: UnsafePointer<CChar>?
        var valuePointer: UnsafeRawPointer?
        var size = 0
        while out.count < KafkaHeader.maxCount,
              rd_kafka_header_get_all(list, index, &namePointer, &valuePointer, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
            index += 1
            guard let namePointer else { continue }
            let nameLength = strnlen(namePointer, KafkaHeader.maxNameBytes + 1)
            guard nameLength <= KafkaHeader.maxNameBytes, size <= KafkaHeader.maxValueBytes else { continue }
            let name = String(decoding: UnsafeRawBufferPointer(start: namePointer, count: nameLength), as: UTF8.self)
            let value = valuePointer.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
            out.append(KafkaHeader(name: name, value: value))
        }
        return out
    }

    /// Serves delivery reports and client callbacks; blocks up to `timeoutMs`.
    func poll(timeoutMs: Int32) {
        rd_kafka_poll(handle, timeoutMs)
    }

    /// Waits for outstanding deliveries; returns false if some were still pending.
    func flush(timeoutMs: Int32) -> Bool {
        rd_kafka_flush(handle, timeoutMs) == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    var outQueueLength: Int { Int(rd_kafka_outq_len(handle)) }

    /// Fails every message not yet delivered (queued or in flight) and serves their
    /// delivery reports, for up to `timeoutMs`; before a producer is let go.
    func purgeAndDrain(timeoutMs: Int) {
        rd_kafka_purge(handle, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        var waited = 0
        repeat {
            rd_kafka_poll(handle, 50)
            waited += 50
        } while outQueueLength > 0 && waited < timeoutMs
    }

    // MARK: Health

    /// The fatal error this client raised, if any: it will deliver nothing more and must
    /// be replaced (for a producer, an idempotence state it cannot reconcile with the
    /// broker's).
    func fatalError() -> String? {
        guard rd_kafka_fatal_error(handle, nil, 0) != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        var errstr = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(handle, &errstr, errstr.count)
        let text = String(decoding: errstr.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(RDKafkaConfig.errorString(err)): \(text)"
    }

    /// During an outage, asks (at most once a second, for up to `timeoutMs`) whether a
    /// broker answers again; librdkafka reports failed connections but not restored ones.
    /// Called from the client's poll thread.
    func checkOutage(timeoutMs: Int32 = 1_000) {
        guard context.outage.probeDue() else { return }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, nil, &metadata, timeoutMs)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        if err == RD_KAFKA_RESP_ERR_NO_ERROR { context.brokerAnswered() }
    }

    /// Raises a fabricated fatal error, as a broker that lost the producer's state would.
    func injectFatalError(_ reason: String) {
        _ = rd_kafka_test_fatal_error(handle, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason)
    }

    // MARK: Consumer

    func subscribe(_ topics: [String]) throws {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for t in topics { rd_kafka_topic_partition_list_add(list, t, RD_KAFKA_PARTITION_UA) }
        let err = rd_kafka_subscribe(handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(.client, "cannot subscribe to \(topics): \(RDKafkaConfig.errorString(err))", rdkafkaError: err.rawValue)
        }
    }

    /// Assigns every partition of `topic` (no group), each starting at the first message
    /// at or after `fromTimestampMs` (the end, where there is none). Returns false when
    /// the topic does not exist yet or the broker does not answer; try again later.
    func assignAll(topic: String, fromTimestampMs: Int64) -> Bool {
        guard let rkt = rd_kafka_topic_new(handle, topic, nil) else { return false }
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, rkt, &metadata, 2_000)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            context.logger.debug("cannot read \(topic)'s partitions yet: \(RDKafkaConfig.errorString(err))")
            return false
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0, let t = metadata.pointee.topics?.pointee,
              t.err == RD_KAFKA_RESP_ERR_NO_ERROR, t.partition_cnt > 0, let parts = t.partitions
        else {
            context.logger.debug("\(topic) has no partitions yet")
            return false
        }
        let list = rd_kafka_topic_partition_list_new(t.partition_cnt)!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for i in 0..<Int(t.partition_cnt) {
            let p = rd_kafka_topic_partition_list_add(list, topic, parts[i].id)
            p?.pointee.offset = fromTimestampMs  // offsets_for_times reads timestamps here
        }
        let found = rd_kafka_offsets_for_times(handle, list, 5_000)
        if let elems = list.pointee.elems {
            for i in 0..<Int(list.pointee.cnt) {
                if found != RD_KAFKA_RESP_ERR_NO_ERROR || elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    // A broker that cannot look offsets up by time: from the start (the
                    // reader skips what is too old by the message's timestamp).
                    elems[i].offset = Int64(RD_KAFKA_OFFSET_BEGINNING)
                } else if elems[i].offset < 0 {
                    elems[i].offset = Int64(RD_KAFKA_OFFSET_END)  // nothing that recent
                }
            }
        }
        let assigned = rd_kafka_assign(handle, list)
        guard assigned == RD_KAFKA_RESP_ERR_NO_ERROR else {
            context.logger.debug("cannot assign \(topic): \(RDKafkaConfig.errorString(assigned))")
            return false
        }
        context.logger.debug("reading \(topic) without a group", metadata: ["partitions": "\(t.partition_cnt)"])
        return true
    }

    /// Drops a hand-made assignment.
    func unassignAll() {
        rd_kafka_assign(handle, nil)
    }

    enum PollResult {
        case message(KafkaMessage)
        case error(String)
        case none
    }

    /// Reads one message or event from the consumer queue; blocks up to `timeoutMs`.
    func consumerPoll(timeoutMs: Int32) -> PollResult {
        guard let m = rd_kafka_consumer_poll(handle, timeoutMs) else { return .none }
        defer { rd_kafka_message_destroy(m) }
        let msg = m.pointee
        if msg.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            if msg.err == RD_KAFKA_RESP_ERR__PARTITION_EOF { return .none }
            return .error(String(cString: rd_kafka_message_errstr(m)))
        }
        let topic = msg.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        let value = msg.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.len)) } ?? []
        let key = msg.key.map { Array(UnsafeRawBufferPointer(start: $0, count: msg.key_len)) }
        var tsType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let ts = rd_kafka_message_timestamp(m, &tsType)
        let tp = TopicPartition(topic: topic, partition: msg.partition)
        return .message(KafkaMessage(
            topic: topic, partition: msg.partition, offset: msg.offset, key: key, value: value,
            timestampMs: tsType == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts,
            generation: context.assignments.withLock { $0.generation(of: tp) },
            headers: RDKafkaClient.readHeaders(m)))
    }

    func commit(_ offsets: [TopicPartitionOffset], synchronously: Bool) throws {
        guard !offsets.isEmpty else { return }
        let list = RDKafkaClient.makeList(offsets)
        defer { rd_kafka_topic_partition_list_destroy(list) }
        let err = rd_kafka_commit(handle, list, synchronously ? 0 : 1)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(.commit, "commit failed: \(RDKafkaConfig.errorString(err))", rdkafkaError: err.rawValue)
        }
    }

    /// Pauses (or resumes) fetching for every partition currently assigned.
    func setPaused(_ paused: Bool) {
        // Under the lock the assign callback takes too: a rebalance racing with this call
        // applies either the state before it or this one, never a stale one after it.
        context.wantsPaused.withLock { wanted in
            wanted = paused
            var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
            guard rd_kafka_assignment(handle, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return }
            defer { rd_kafka_topic_partition_list_destroy(list) }
            if paused { rd_kafka_pause_partitions(handle, list) } else { rd_kafka_resume_partitions(handle, list) }
        }
    }

    /// Messages behind the end of each assigned partition: the high watermark (as last
    /// seen in fetch responses; no broker round trip) minus the consumer's position.
    func lag() -> [(TopicPartition, Int64)] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list else { return [] }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        rd_kafka_position(handle, list)
        guard list.pointee.cnt > 0, let elems = list.pointee.elems else { return [] }
        var out: [(TopicPartition, Int64)] = []
        for i in 0..<Int(list.pointee.cnt) {
            let e = elems[i]
            var low: Int64 = 0
            var high: Int64 = 0
            guard rd_kafka_get_watermark_offsets(handle, e.topic, e.partition, &low, &high) == RD_KAFKA_RESP_ERR_NO_ERROR,
                  high >= 0 else { continue }
            let position = e.offset >= 0 ? e.offset : low
            out.append((TopicPartition(topic: String(cString: e.topic), partition: e.partition), max(0, high - position)))
        }
        return out
    }

    /// Leaves the group (serving the final revoke) and stops fetching.
    func consumerClose() {
        rd_kafka_consumer_close(handle)
    }

    static func makeList(_ offsets: [TopicPartitionOffset]) -> UnsafeMutablePointer<rd_kafka_topic_partition_list_t> {
        let list = rd_kafka_topic_partition_list_new(Int32(offsets.count))!
        for o in offsets {
            let p = rd_kafka_topic_partition_list_add(list, o.topicPartition.topic, o.topicPartition.partition)
            p?.pointee.offset = o.offset
        }
        return list
    }

    static func partitions(_ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) -> [TopicPartition] {
        guard let list, list.pointee.cnt > 0, let elems = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { i in
            TopicPartition(topic: String(cString: elems[i].topic), partition: elems[i].partition)
        }
    }
}

/// The continuation of one produced message, resolved by its delivery report, or
/// earlier by the sender's cancellation (the report then finds it resolved).
final class DeliveryPromise: Sendable {
    private let state: Mutex<CheckedContinuation<Void, any Error>?>
    init(_ continuation: CheckedContinuation<Void, any Error>) { state = Mutex(continuation) }

    func resolve(_ result: Result<Void, any Error>) {
        let continuation = state.withLock { c in
            defer { c = nil }
            return c
        }
        continuation?.resume(with: result)
    }
}

/// Delivery reports: called on the producer's poll thread. Balances the `passRetained`
/// of `produce`.
private let deliveryCallback: @convention(c) (OpaquePointer?, UnsafePointer<rd_kafka_message_t>?, UnsafeMutableRawPointer?) -> Void = {
    rk, message, _ in
    guard let message, let opaque = message.pointee._private else { return }
    let promise = Unmanaged<DeliveryPromise>.fromOpaque(opaque).takeRetainedValue()
    let err = message.pointee.err
    if err == RD_KAFKA_RESP_ERR_NO_ERROR {
        RDKafkaContext.from(rk)?.brokerAnswered()
        promise.resolve(.success(()))
    } else {
        promise.resolve(.failure(KafkaError(
            .delivery, "delivery failed: \(RDKafkaConfig.errorString(err))", rdkafkaError: err.rawValue)))
    }
}

/// Group rebalances, on the consumer's poll thread. Eager and cooperative protocols both
/// handled; on revoke the owner's handler is asked for final offsets, committed
/// synchronously before the partitions are let go.
private let rebalanceCallback: @convention(c) (
    OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?
) -> Void = { rk, err, partitions, _ in
    guard let rk else { return }
    let context = RDKafkaContext.from(rk)
    let tps = RDKafkaClient.partitions(partitions)
    let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
    switch err {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        context?.logger.info("partitions assigned", metadata: ["partitions": "\(tps)"])
        if let context {
            if !cooperative { context.assignments.withLock { $0.revokeAll() } }
            let generation = context.assignments.withLock { $0.assign(tps) }
            context.onRebalance?(.assigned(tps, generation: generation))
        }
        if cooperative {
            if let e = rd_kafka_incremental_assign(rk, partitions) { rd_kafka_error_destroy(e) }
        } else {
            rd_kafka_assign(rk, partitions)
        }
        // A full worker must not fetch from new partitions, and one that has room must
        // not be left with partitions still paused from before the rebalance (newer
        // librdkafka keeps a re-assigned partition's pause): nobody would resume them.
        if let partitions, let context {
            context.wantsPaused.withLock { paused in
                if paused { rd_kafka_pause_partitions(rk, partitions) } else { rd_kafka_resume_partitions(rk, partitions) }
            }
        }
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        context?.logger.info("partitions revoked", metadata: ["partitions": "\(tps)"])
        // Stamped first: whatever is fetched from here on for these partitions is refused.
        context?.assignments.withLock { cooperative ? $0.revoke(tps) : $0.revokeAll() }
        context?.onRebalance?(.revoked(tps))
        if cooperative {
            if let e = rd_kafka_incremental_unassign(rk, partitions) { rd_kafka_error_destroy(e) }
        } else {
            rd_kafka_assign(rk, nil)
        }
    default:
        context?.logger.warning("rebalance error: \(RDKafkaConfig.errorString(err))")
        context?.assignments.withLock { $0.revokeAll() }
        context?.onRebalance?(.revoked(tps))
        rd_kafka_assign(rk, nil)
    }
}

/// The broker's answer to a commit (asynchronous or not), per partition: handed to the
/// owner, which counts an offset as committed only from here.
private let offsetCommitCallback: @convention(c) (
    OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?
) -> Void = { rk, err, partitions, _ in
    guard let context = RDKafkaContext.from(rk) else { return }
    var outcome: [(TopicPartitionOffset, Bool)] = []
    var failure = err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET ? nil : err
    if let partitions, partitions.pointee.cnt > 0, let elems = partitions.pointee.elems {
        for i in 0..<Int(partitions.pointee.cnt) {
            let e = elems[i]
            let ok = err == RD_KAFKA_RESP_ERR_NO_ERROR && e.err == RD_KAFKA_RESP_ERR_NO_ERROR
            if e.err != RD_KAFKA_RESP_ERR_NO_ERROR { failure = e.err }
            guard e.offset >= 0 else { continue }
            let tp = TopicPartition(topic: String(cString: e.topic), partition: e.partition)
            outcome.append((TopicPartitionOffset(tp, offset: e.offset), ok))
        }
    }
    if !outcome.isEmpty { context.onCommit?(outcome) }
    if let failure {
        // Commits fail in a row while the brokers are away: one line per 30 s.
        context.warnThrottled(
            "commit", "offset commit failed; it is retried",
            metadata: ["rdkafka.error": "\(RDKafkaConfig.errorString(failure))"])
    }
}

/// A thread of its own for a blocking poll loop (never the cooperative pool).
final class PollThread: Sendable {
    private final class Flag: Sendable {
        let running = Atomic<Bool>(true)
    }
    private let flag = Flag()
    private let thread: DedicatedThread

    init(name: String, body: @escaping @Sendable (_ isRunning: () -> Bool) -> Void) {
        let flag = self.flag
        thread = DedicatedThread(name: name) {
            body { flag.running.load(ordering: .acquiring) }
        }
    }

    /// Asks the loop to stop and waits until it has. Safe to call more than once.
    func stop() {
        let (exchanged, _) = flag.running.compareExchange(expected: true, desired: false, ordering: .acquiringAndReleasing)
        if exchanged { thread.join() }
    }
}
