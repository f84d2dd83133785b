import Foundation

/// A request to stop a job, as read from the control topic:
/// `{"type": "cancel", "job_id", "tenant", "submission_id"}`.
///
/// It stops only the job it was asked for: the same id, the same tenant and, when it
/// names one, the same submission; and only for the event TTL after it was asked, the
/// time the job's id stays owned. A later job that reuses the id (another tenant's, once
/// the first job's keys expired, or the same tenant's in a new submission) runs.
public struct CancelRequest: Sendable, Equatable {
    public var jobID: String
    /// The job's owner. The gateway always names it; a Kafka client that leaves it out
    /// cancels the id whatever its tenant.
    public var tenant: String?
    /// The gateway's submission of the job; none for a job produced straight to Kafka.
    public var submissionID: String?
    /// When the cancel was asked, in seconds since 1970.
    public var at: Double

    public init(jobID: String, tenant: String? = nil, submissionID: String? = nil, at: Double) {
        self.jobID = jobID
        self.tenant = tenant
        self.submissionID = submissionID
        self.at = at
    }

    /// A control message's cancel; nil for anything else. `timestampMs` is the message's
    /// timestamp (when it was asked); `receivedAt` stands in when it has none.
    public static func parse(_ value: [UInt8], key: String?, timestampMs: Int64?, receivedAt: Double) -> CancelRequest? {
        guard let message = try? JSON.decode(JSONValue.self, from: value),
              message["type"]?.stringValue == "cancel",
              let jobID = message["job_id"]?.stringValue ?? key, !jobID.isEmpty
        else { return nil }
        return CancelRequest(
            jobID: jobID, tenant: message["tenant"]?.stringValue, submissionID: message["submission_id"]?.stringValue,
            at: timestampMs.map { Double($0) / 1000 } ?? receivedAt)
    }

    /// The control message the gateway produces.
    public static func message(jobID: String, tenant: String, submissionID: String?) -> [UInt8] {
        var o: [String: JSONValue] = ["type": "cancel", "job_id": .string(jobID), "tenant": .string(tenant)]
        if let submissionID { o["submission_id"] = .string(submissionID) }
        return (try? JSON.encode(JSONValue.object(o))) ?? []
    }

    /// Whether this cancel is for `job`.
    public func applies(to job: Job) -> Bool {
        guard job.id == jobID else { return false }
        if let tenant, tenant != job.tenant { return false }
        if let submissionID, submissionID != job.submissionID { return false }
        return true
    }
}
