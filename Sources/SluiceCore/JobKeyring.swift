import Crypto
import Foundation

/// Seals per-job provider keys (`api_key`) for the requests topic, so that no record
/// holds one in clear: AES-256-GCM with a key the gateway and the workers share from the
/// environment (`kafka.job_key_env`), the job id as associated data (a sealed key opens
/// only in its own job).
///
/// A sealed key reads `v1.KID.BASE64`, where KID names the key that sealed it (the first
/// 4 bytes of its SHA-256, in hex): during a rotation the workers hold the new key and
/// the previous one (`kafka.job_previous_key_env`) and open either, while gateways seal
/// with the new one only.
public struct JobKeyring: Sendable {
    struct Entry: Sendable {
        var id: String
        /// The key's bytes (`SymmetricKey` is not `Sendable`; one is made per use).
        var bytes: [UInt8]
        var key: SymmetricKey { SymmetricKey(data: bytes) }
    }

    let current: Entry
    let previous: [Entry]

    /// Keys as base64 of 32 random bytes (`openssl rand -base64 32`).
    public init(current: String, previous: [String] = []) throws {
        self.current = try JobKeyring.entry(current, name: "the current job key")
        self.previous = try previous.map { try JobKeyring.entry($0, name: "the previous job key") }
    }

    /// The keyring the config names (`kafka.job_key_env`, `job_previous_key_env`, or the
    /// literal `job_key` of tests); nil when none is configured or the variable is unset
    /// or empty (as an unset `SLUICE_API_KEY` leaves a gateway open): per-job keys are
    /// then refused by the gateway, and sealed jobs sent to the DLQ by the worker.
    public static func from(_ kafka: SluiceConfig.Kafka, environment: [String: String]) throws -> JobKeyring? {
        let current = kafka.jobKey ?? kafka.jobKeyEnv.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
        guard let current else { return nil }
        let previous = kafka.jobPreviousKeyEnv.flatMap { environment[$0] }.flatMap { $0.isEmpty ? nil : $0 }
        return try JobKeyring(current: current, previous: previous.map { [$0] } ?? [])
    }

    private static func entry(_ base64: String, name: String) throws -> Entry {
        guard let bytes = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)), bytes.count == 32 else {
            throw SluiceError(.config, "\(name) must be 32 random bytes in base64 (openssl rand -base64 32)")
        }
        let digest = SHA256.hash(data: bytes)
        let id = digest.prefix(4).map { String(format: "%02x", $0) }.joined()
        return Entry(id: id, bytes: Array(bytes))
    }

    /// `secret` sealed for the job `jobID`.
    public func seal(_ secret: Secret, jobID: String) throws -> String {
        let box = try AES.GCM.seal(Data(secret.value.utf8), using: current.key, authenticating: Data(jobID.utf8))
        guard let combined = box.combined else { throw SluiceError(.internal, "AES-GCM gave no combined box") }
        return "v1.\(current.id).\(combined.base64EncodedString())"
    }

    /// The key sealed in `sealed`, if it was sealed for `jobID` with a key of this ring.
    public func open(_ sealed: String, jobID: String) throws -> Secret {
        let parts = sealed.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "v1", let bytes = Data(base64Encoded: String(parts[2])) else {
            throw SluiceError(.invalidJob, "\"api_key_sealed\" is not a sealed key (v1.KID.BASE64)")
        }
        guard let entry = ([current] + previous).first(where: { $0.id == parts[1] }) else {
            throw SluiceError(
                .invalidJob,
                "\"api_key_sealed\" was sealed with job key \(parts[1]), which this worker does not hold: give it as kafka.job_key_env or job_previous_key_env")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: bytes)
            let plain = try AES.GCM.open(box, using: entry.key, authenticating: Data(jobID.utf8))
            return Secret(String(decoding: plain, as: UTF8.self))
        } catch {
            throw SluiceError(.invalidJob, "\"api_key_sealed\" does not open for job \"\(jobID)\": it was altered or sealed for another job")
        }
    }
}

extension Job {
    /// The job as the record on the requests topic: its `api_key`, if any, sealed into
    /// `api_key_sealed`, never in clear. Throws when there is a key and no keyring.
    public func record(keyring: JobKeyring?) throws -> JSONValue {
        guard case .object(var object) = encoded(includeSecret: false) else { return encoded(includeSecret: false) }
        if let apiKey {
            guard let keyring else {
                throw SluiceError(.config, "a per-job api_key travels sealed, and no job key is configured: set kafka.job_key_env (the same key on gateways and workers)")
            }
            object["api_key_sealed"] = .string(try keyring.seal(apiKey, jobID: id))
        }
        return .object(object)
    }
}
