import CRdKafka
import Dispatch
import Logging

/// Topic administration for the local stack and tests.
public enum KafkaAdmin {
    /// Creates topics that do not exist yet, each with the topic settings `config` (e.g.
    /// `max.message.bytes`); existing ones are left as they are.
    public static func createTopics(
        brokers: String, topics: [(name: String, partitions: Int)], config: [String: String] = [:], timeoutMs: Int32 = 15_000
    ) throws {
        guard !topics.isEmpty else { return }
        let conf = try RDKafkaConfig.make(["bootstrap.servers": brokers, "log.connection.close": "false"])
        rd_kafka_conf_set_log_cb(conf, rdkafkaQuietLogCallback)
        var errstr = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(.admin, "cannot create an admin client: \(String(cString: errstr))")
        }
        defer { rd_kafka_destroy(rk) }

        var newTopics: [OpaquePointer?] = []
        defer { for t in newTopics { rd_kafka_NewTopic_destroy(t) } }
        for t in topics {
            guard let nt = rd_kafka_NewTopic_new(t.name, Int32(clamping: t.partitions), 1, &errstr, errstr.count) else {
                throw KafkaError(.admin, "topic \(t.name): \(String(cString: errstr))")
            }
            newTopics.append(nt)
            for (key, value) in config.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(nt, key, value)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    throw KafkaError(.admin, "topic \(t.name): setting \(key)=\(value): \(RDKafkaConfig.errorString(err))",
                                     rdkafkaError: err.rawValue)
                }
            }
        }
        let queue = rd_kafka_queue_new(rk)
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &errstr, errstr.count)
        rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errstr, errstr.count)

        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(rk, buffer.baseAddress, buffer.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeoutMs + 2_000) else {
            throw KafkaError(.admin, "creating topics timed out; is the broker at \(brokers) up?")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventErr = rd_kafka_event_error(event)
        if eventErr != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(.admin, "creating topics failed: \(String(cString: rd_kafka_event_error_string(event)))",
                             rdkafkaError: eventErr.rawValue)
        }
        guard let result = rd_kafka_event_CreateTopics_result(event) else { return }
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
        for i in 0..<count {
            let r = results[i]
            let err = rd_kafka_topic_result_error(r)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR, err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                let name = String(cString: rd_kafka_topic_result_name(r))
                let msg = rd_kafka_topic_result_error_string(r).map { String(cString: $0) } ?? RDKafkaConfig.errorString(err)
                throw KafkaError(.admin, "creating topic \(name) failed: \(msg)", rdkafkaError: err.rawValue)
            }
        }
    }
}

/// Readiness checks: whether the cluster answers a metadata request.
///
/// One client, created with the probe and kept, serves every check (one connection per
/// broker rather than a new client per check). The metadata request blocks, so it runs
/// on a serial queue of the probe's own, never on the cooperative pool.
public final class KafkaProbe: Sendable {
    private let client: RDKafkaClient
    private let queue = DispatchQueue(label: "sluice-kafka-probe")

    public init(brokers: String, properties: [String: String] = [:], logger: Logger) throws {
        var props = properties
        props["bootstrap.servers"] = brokers
        props["log.connection.close"] = "false"
        client = try RDKafkaClient(kind: .producer, properties: props, context: RDKafkaContext(logger: logger))
    }

    /// Returns once a broker has answered a metadata request; throws `KafkaError(.client)`
    /// naming the reason when none does within `timeoutMs`.
    public func ping(timeoutMs: Int32 = 2_000) async throws {
        let client = self.client
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                var metadata: UnsafePointer<rd_kafka_metadata>?
                let err = rd_kafka_metadata(client.handle, 0, nil, &metadata, timeoutMs)
                if let metadata { rd_kafka_metadata_destroy(metadata) }
                // Serve queued error events so they do not pile up between checks.
                client.poll(timeoutMs: 0)
                if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                    continuation.resume()
                } else {
                    continuation.resume(throwing: KafkaError(
                        .client, "no broker answered a metadata request: \(RDKafkaConfig.errorString(err))",
                        rdkafkaError: err.rawValue))
                }
            }
        }
    }
}

extension KafkaAdmin {
    /// Messages of `topic` not yet committed by `group`, per partition: each partition's
    /// end (high watermark) minus the group's committed offset (the whole partition when
    /// the group has committed nothing). Asks the broker; does not join the group.
    /// Blocking: call it off the cooperative pool (or in tools and tests).
    public static func groupLag(brokers: String, group: String, topic: String, logger: Logger) throws -> [Int32: Int64] {
        let props = [
            "bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": "false", "log.connection.close": "false",
        ]
        let client = try RDKafkaClient(kind: .consumer, properties: props, context: RDKafkaContext(logger: logger))
        guard let rkt = rd_kafka_topic_new(client.handle, topic, nil) else {
            throw KafkaError(.client, "cannot name topic \(topic)")
        }
        defer { rd_kafka_topic_destroy(rkt) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(client.handle, 0, rkt, &metadata, 5_000)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else {
            throw KafkaError(.client, "cannot read \(topic)'s partitions: \(RDKafkaConfig.errorString(err))", rdkafkaError: err.rawValue)
        }
        defer { rd_kafka_metadata_destroy(metadata) }
        guard metadata.pointee.topic_cnt > 0, let t = metadata.pointee.topics?.pointee, let parts = t.partitions else { return [:] }
        let list = rd_kafka_topic_partition_list_new(t.partition_cnt)!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for i in 0..<Int(t.partition_cnt) { _ = rd_kafka_topic_partition_list_add(list, topic, parts[i].id) }
        let committedErr = rd_kafka_committed(client.handle, list, 5_000)
        guard committedErr == RD_KAFKA_RESP_ERR_NO_ERROR, let elems = list.pointee.elems else {
            throw KafkaError(.commit, "cannot read \(group)'s committed offsets: \(RDKafkaConfig.errorString(committedErr))",
                             rdkafkaError: committedErr.rawValue)
        }
        var lag: [Int32: Int64] = [:]
        for i in 0..<Int(list.pointee.cnt) {
            var low: Int64 = 0
            var high: Int64 = 0
            let q = rd_kafka_query_watermark_offsets(client.handle, topic, elems[i].partition, &low, &high, 5_000)
            guard q == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw KafkaError(.client, "cannot read \(topic)[\(elems[i].partition)]'s end: \(RDKafkaConfig.errorString(q))")
            }
            let committed = elems[i].offset >= 0 ? elems[i].offset : low
            lag[elems[i].partition] = max(0, high - committed)
        }
        return lag
    }
}
