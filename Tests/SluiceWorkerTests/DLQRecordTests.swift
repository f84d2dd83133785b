import Foundation
import SluiceCore
import SluiceKafka
import Testing
@testable import SluiceWorker

/// What a DLQ record keeps of a message: its reason and origin, and its key and value with
/// secrets masked, however the producer wrote them.
@Suite struct DLQRecordTests {
    @Test func aSecretInTheMessagesKeyOrValueIsMasked() throws {
        let message = KafkaMessage(
            topic: "sluice.requests", partition: 2, offset: 41, key: Array("sk-live-key0123456789abcdef".utf8),
            value: Array(#"{"api_key": "hunter2-secret", "note": "Bearer tok-0123456789abcdef"}"#.utf8), timestampMs: nil,
            generation: 1)
        let record = DLQRecord(message: message, error: "not a job: missing model")
        let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(record)) as? [String: Any])
        let key = try #require(json["key"] as? String)
        let base64 = try #require(json["value_base64"] as? String)
        let value = String(decoding: try #require(Data(base64Encoded: base64)), as: UTF8.self)
        #expect(!key.contains("key0123456789abcdef"), "the key is masked: \(key)")
        #expect(!value.contains("hunter2-secret") && !value.contains("tok-0123456789abcdef"), "the value is masked: \(value)")
        #expect(json["error"] as? String == "not a job: missing model")
        #expect(json["topic"] as? String == "sluice.requests" && json["partition"] as? Int == 2 && json["offset"] as? Int == 41)
    }
}
