import Foundation
import SluiceCore
import SluiceKafka

/// A message that could not be parsed or validated, as written to the DLQ: the reason,
/// where it came from, and its value with secret-looking values masked
/// (`SecretMasker`), whether or not it is JSON.
struct DLQRecord: Encodable {
    var error: String
    var topic: String
    var partition: Int32
    var offset: Int64
    /// The message's key, masked; also the DLQ record's own key.
    var key: [UInt8]?
    var value: [UInt8]
    var at: String
    /// Set in a cut-down record: the size of the masked value before it was cut.
    var valueBytes: Int?

    /// What a cut-down record keeps of the value, and of the key.
    static let cutValueBytes = 16 * 1024
    static let cutKeyBytes = 1024

    init(message: KafkaMessage, error: String) {
        self.error = error
        self.topic = message.topic
        self.partition = message.partition
        self.offset = message.offset
        self.key = message.key.map(SecretMasker.masked)
        self.value = SecretMasker.masked(message.value)
        self.at = ISO8601DateFormatter().string(from: Date())
    }

    /// The record for a DLQ that refused this one for good (too large): the reason and
    /// origin kept, the value cut to its first `cutValueBytes` (`value_truncated`,
    /// `value_bytes` say so), a long key dropped.
    func cutDown() -> DLQRecord {
        var out = self
        out.valueBytes = value.count
        out.value = Array(value.prefix(DLQRecord.cutValueBytes))
        if let key, key.count > DLQRecord.cutKeyBytes { out.key = nil }
        return out
    }

    enum CodingKeys: String, CodingKey {
        case error, topic, partition, offset, key, at
        case valueBase64 = "value_base64"
        case valueTruncated = "value_truncated"
        case valueBytes = "value_bytes"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(error, forKey: .error)
        try c.encode(topic, forKey: .topic)
        try c.encode(partition, forKey: .partition)
        try c.encode(offset, forKey: .offset)
        try c.encode(key.map { String(decoding: $0, as: UTF8.self) }, forKey: .key)
        try c.encode(Data(value).base64EncodedString(), forKey: .valueBase64)
        try c.encode(at, forKey: .at)
        if let valueBytes {
            try c.encode(true, forKey: .valueTruncated)
            try c.encode(valueBytes, forKey: .valueBytes)
        }
    }
}
