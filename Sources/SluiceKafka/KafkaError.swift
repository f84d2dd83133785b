/// An error from the Kafka layer: what failed, in words, and librdkafka's error code.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case config
        case client
        case produce
        case delivery
        case commit
        case admin
        case closed
    }

    public var code: Code
    public var message: String
    /// librdkafka's `rd_kafka_resp_err_t` value, where there is one.
    public var rdkafkaError: Int32?

    public init(_ code: Code, _ message: String, rdkafkaError: Int32? = nil) {
        self.code = code
        self.message = message
        self.rdkafkaError = rdkafkaError
    }

    public var description: String { "Kafka \(code): \(message)" }

    /// Whether producing the same message again cannot succeed: the broker (or the
    /// producer's own `message.max.bytes` check) refused the message itself, or this
    /// client may not write to the topic. Such an error ends a delivery; any other
    /// (a broker away, a leader moving, a timeout) is worth retrying.
    public var isPermanent: Bool {
        guard code == .produce || code == .delivery, let rdkafkaError else { return false }
        return RDKafkaConfig.permanentProduceErrors.contains(rdkafkaError)
    }

    /// Whether the message was refused for its size (larger than the producer's
    /// `message.max.bytes` or the topic's `max.message.bytes`): a smaller one may pass.
    public var isTooLarge: Bool {
        guard code == .produce || code == .delivery, let rdkafkaError else { return false }
        return RDKafkaConfig.tooLargeProduceErrors.contains(rdkafkaError)
    }
}

/// A message read from a topic.
public struct KafkaMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    /// The record's timestamp in milliseconds since the epoch, if it has one.
    public var timestampMs: Int64?
    /// The consumer's assignment generation of the partition when the message was
    /// fetched (0: fetched for a partition not assigned, or not from a group consumer).
    public var generation: UInt64
    /// The record's headers, as far as they are within the bounds of ``KafkaHeader``
    /// (the rest are dropped, never cut short).
    public var headers: [KafkaHeader]

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }
    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }

    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8], timestampMs: Int64?,
                generation: UInt64 = 0, headers: [KafkaHeader] = []) {
        self.generation = generation
        self.headers = headers
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestampMs = timestampMs
    }
}

/// One record header. Any producer may write a record, so a consumer reads headers as
/// untrusted: at most ``maxCount`` of them, names of at most ``maxNameBytes`` bytes and
/// values of at most ``maxValueBytes``; a header beyond those bounds is left out.
public struct KafkaHeader: Sendable, Hashable {
    public static let maxCount = 32
    public static let maxNameBytes = 256
    public static let maxValueBytes = 8 * 1024

    public var name: String
    /// nil for a header with a null value.
    public var value: [UInt8]?

    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    public init(name: String, value: String) {
        self.init(name: name, value: Array(value.utf8))
    }
}
