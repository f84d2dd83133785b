import Foundation
import HTTPTypes
import Hummingbird
import SluiceCore

/// An error answered as JSON in OpenAI's shape, `{"error": {"message", "type", "param",
/// "code"}}`, which holds the `{"error": {"type", "message"}}` every endpoint promises.
/// Messages say what was wrong and what to do; they never carry a key.
struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    var status: HTTPResponse.Status
    var type: String
    var message: String
    /// The request field at fault, when there is one.
    var param: String?
    /// A machine-readable reason (`model_not_found`, `missing_variable`, ...).
    var code: String?
    /// Seconds for a `Retry-After` header.
    var retryAfter: Int?

    init(_ status: HTTPResponse.Status, _ type: String, _ message: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.code = code
    }

    static func badRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.badRequest, "invalid_request_error", message, param: param, code: code)
    }

    static func notFound(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.notFound, "not_found_error", message, param: param, code: code)
    }

    /// Something the API key may not do.
    static func forbidden(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(.forbidden, "permission_error", message, param: param, code: code)
    }

    /// A job id another tenant holds (or that has no owner): the answer names neither.
    static func idConflict(_ id: String) -> APIError {
        APIError(.conflict, "conflict_error", "the job id \"\(id)\" is already in use; submit with another id",
                 param: "id", code: "job_id_conflict")
    }

    static func unavailable(_ message: String) -> APIError {
        APIError(.serviceUnavailable, "service_unavailable", message)
    }

    /// 429 for a tenant already holding `limit` jobs in flight (across gateways).
    static func tooManyJobs(limit: Int) -> APIError {
        tenantLimit(
            "this API key's tenant has \(limit) jobs in flight, the most gateway.max_jobs_per_tenant allows; wait for one to finish and retry",
            code: "too_many_jobs")
    }

    /// 429 for a tenant already holding `limit` event streams on this gateway process.
    static func tooManyReaders(limit: Int) -> APIError {
        tenantLimit(
            "this API key's tenant has \(limit) event streams open on this gateway, the most gateway.max_readers_per_tenant allows; close one or retry later",
            code: "too_many_readers")
    }

    /// 429 for a tenant that has spent its daily limit: retry when the UTC day ends.
    static func quotaExceeded(_ spend: SpendCheck, now: Double) -> APIError {
        tenantLimit(spend.message(who: "this API key's tenant"), code: "quota_exceeded",
                    retryAfter: spend.day.secondsUntilEnd(from: now))
    }

    /// A tenant's limit reached: 429, retry in `retryAfter` seconds.
    private static func tenantLimit(_ message: String, code: String, retryAfter: Int = 5) -> APIError {
        var error = APIError(.tooManyRequests, "rate_limit_error", message, code: code)
        error.retryAfter = retryAfter
        return error
    }

    var description: String { "\(status.code) \(type): \(message)" }

    var headers: HTTPFields {
        var fields: HTTPFields = [.contentType: "application/json"]
        if let retryAfter { fields[.retryAfter] = String(retryAfter) }
        return fields
    }

    /// `{"error": {...}}`.
    var json: JSONValue {
        ["error": [
            "message": .string(message), "type": .string(type),
            "param": param.map(JSONValue.string) ?? .null, "code": code.map(JSONValue.string) ?? .null,
        ]]
    }

    /// The error body, encoded.
    var jsonBytes: [UInt8] {
        (try? JSON.sortedEncoder.encode(json)).map(Array.init) ?? []
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    func response() -> Response {
        var extra: HTTPFields = [:]
        if let retryAfter { extra[.retryAfter] = String(retryAfter) }
        return Response.json(json, status: status, headers: extra)
    }
}

extension APIError {
    /// The answer for a request the domain model rejected.
    init(_ error: SluiceError) {
        switch error.code {
        case .unknownPrompt:
            self = .notFound(error.message, code: error.code.rawValue)
        case .missingVariable:
            self = .badRequest(error.message, param: error.context["variable"].map { "variables.\($0)" }, code: error.code.rawValue)
        case .internal, .config:
            self = APIError(.internalServerError, "server_error", error.message, code: error.code.rawValue)
        default:
            self = .badRequest(error.message, param: error.context["field"], code: error.code.rawValue)
        }
    }

    /// The answer for a job that finished without success, from its result's `error`
    /// (`{type, message, provider_status, retryable}`) and status.
    ///
    /// Request errors are 400 (an unknown prompt 404); a provider's own 4xx passes
    /// through (a 429 stays a 429); other provider failures are 502, a timeout 504, a
    /// cancelled job 409 and a kind not implemented 501; a tenant over its daily spend
    /// limit 429 until the UTC day ends. A job that expired waiting for a
    /// provider that answered 429 is a 429; one that expired in the queue is a 504.
    static func jobFailed(status: String?, error: JSONValue?) -> APIError {
        let type = error?["type"]?.stringValue ?? (status == "cancelled" ? "cancelled" : status == "timed_out" ? "timeout" : "internal_error")
        let message = error?["message"]?.stringValue ?? "the job \(status ?? "failed")"
        let providerStatus = error?["provider_status"]?.intValue
        switch type {
        case "invalid_job", "invalid_request", "unknown_model", "unknown_provider", "missing_variable":
            return APIError(.badRequest, "invalid_request_error", message, code: type)
        case "unknown_prompt":
            return APIError(.notFound, "not_found_error", message, code: type)
        case "unsupported":
            return APIError(.notImplemented, "not_implemented", message, code: type)
        case "timeout":
            return APIError(.gatewayTimeout, "timeout", message, code: type)
        case "cancelled":
            return APIError(.conflict, "cancelled", message, code: type)
        case "quota_exceeded":
            var error = APIError(.tooManyRequests, "rate_limit_error", message, code: type)
            let now = Date().timeIntervalSince1970
            error.retryAfter = UsageDay(unixSeconds: now).secondsUntilEnd(from: now)
            return error
        case "expired" where providerStatus == 429:
            return APIError(.tooManyRequests, "rate_limit_error", message, code: type)
        case "expired":
            return APIError(.gatewayTimeout, "timeout", message, code: type)
        case "provider_error" where providerStatus.map { (400..<500).contains($0) } ?? false:
            let status = HTTPResponse.Status(code: providerStatus!)
            return APIError(status, providerStatus == 429 ? "rate_limit_error" : "provider_error", message, code: type)
        case "provider_error", "connection_error", "provider_protocol_error":
            return APIError(.badGateway, "provider_error", message, code: type)
        default:
            return APIError(.internalServerError, "server_error", message, code: type)
        }
    }
}

extension Response {
    static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        json((try? JSON.sortedEncoder.encode(value)).map(Array.init) ?? [], status: status, headers: headers)
    }
}
