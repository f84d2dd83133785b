import Foundation
import SluiceCore
import Testing

/// Per-job provider keys are sealed for the requests topic: never in clear there, bound
/// to their job, and still readable across a key rotation.
struct JobKeyringTests {
    static func key(_ byte: UInt8) -> String { Data(repeating: byte, count: 32).base64EncodedString() }

    @Test func aSealedKeyIsNotInTheRecordAndOpensInItsJobOnly() throws {
        let ring = try JobKeyring(current: Self.key(1))
        let job = Job(id: "j-1", model: "default", request: .chatInput("x"), apiKey: Secret("sk-at-rest-123"))
        let record = try job.record(keyring: ring)
        let text = String(decoding: try JSON.encode(record), as: UTF8.self)
        #expect(!text.contains("sk-at-rest-123"))
        #expect(record["api_key"] == nil)
        let sealed = try #require(record["api_key_sealed"]?.stringValue)
        #expect(sealed.hasPrefix("v1."))

        let parsed = try Job.parse(record)
        #expect(parsed.apiKey == nil, "the clear key is not in the record")
        #expect(try ring.open(try #require(parsed.sealedAPIKey), jobID: "j-1").value == "sk-at-rest-123")
        // Moved into another job, or altered, it does not open.
        #expect(throws: SluiceError.self) { try ring.open(sealed, jobID: "j-2") }
        var altered = Array(sealed)
        altered[altered.count - 3] = altered[altered.count - 3] == "A" ? "B" : "A"
        #expect(throws: SluiceError.self) { try ring.open(String(altered), jobID: "j-1") }
    }

    @Test func aRotationKeepsRecordsSealedWithThePreviousKeyReadable() throws {
        let old = try JobKeyring(current: Self.key(1))
        let sealed = try old.seal(Secret("sk-old"), jobID: "j")
        let rotated = try JobKeyring(current: Self.key(2), previous: [Self.key(1)])
        #expect(try rotated.open(sealed, jobID: "j").value == "sk-old")
        #expect(try rotated.open(try rotated.seal(Secret("sk-new"), jobID: "j"), jobID: "j").value == "sk-new")
        // Once the previous key is dropped, its records no longer open: the error says so.
        let after = try JobKeyring(current: Self.key(2))
        do {
            _ = try after.open(sealed, jobID: "j")
            Issue.record("opened without the key")
        } catch let error as SluiceError {
            #expect(error.message.contains("job_previous_key_env"))
        }
    }

    @Test func noKeyringNoKeyInTheRecordAndBadKeysAreConfigErrors() throws {
        let job = Job(id: "j", model: "default", request: .chatInput("x"), apiKey: Secret("sk"))
        #expect(throws: SluiceError.self) { try job.record(keyring: nil) }
        #expect(try Job(id: "j", model: "m", request: .chatInput("x")).record(keyring: nil)["api_key_sealed"] == nil)
        #expect(throws: SluiceError.self) { try JobKeyring(current: "too-short") }
        var kafka = SluiceConfig.Kafka()
        kafka.jobKeyEnv = "SLUICE_TEST_UNSET_JOB_KEY"
        #expect(try JobKeyring.from(kafka, environment: [:]) == nil, "an unset variable: no keyring, as for SLUICE_API_KEY")
        #expect(throws: SluiceError.self) { try JobKeyring.from(kafka, environment: ["SLUICE_TEST_UNSET_JOB_KEY": "not base64 of 32 bytes"]) }
        #expect(try JobKeyring.from(SluiceConfig.Kafka(), environment: [:]) == nil)
        kafka.jobPreviousKeyEnv = "PREV"
        let ring = try #require(try JobKeyring.from(kafka, environment: ["SLUICE_TEST_UNSET_JOB_KEY": Self.key(3), "PREV": Self.key(4)]))
        #expect(try ring.open(try JobKeyring(current: Self.key(4)).seal(Secret("p"), jobID: "j"), jobID: "j").value == "p")
    }
}
