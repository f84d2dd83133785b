import Foundation

/// OpenAI's Batch file formats, as `sluice batch` reads and writes them.
///
/// Input: one request per line, `{"custom_id", "method": "POST", "url":
/// "/v1/chat/completions", "body": {OpenAI chat request}}`. The body is a valid Sluice
/// job (`model`, `messages`, hyperparameters at the top level), so it becomes the job
/// as it is, plus an id.
///
/// Output: one result per line, `{"id": "batch_req_…", "custom_id", "response":
/// {"status_code", "request_id", "body"}, "error"}`, where `body` is the unified
/// response (a superset of `chat.completion`, `metrics` included) and `error` is null
/// on success, else `{code, message}`.
public enum BatchFormat {
    public static let chatCompletionsURL = "/v1/chat/completions"

    /// One input line, checked for shape only. The body becomes a job in `job(_:id:)`.
    public struct Request: Sendable {
        public var customID: String
        public var body: [String: JSONValue]
    }

    /// Parses one input line (without its newline). Throws `SluiceError(.invalidRequest)`
    /// whose message says what is wrong with the line.
    public static func parseRequest(_ line: some Collection<UInt8>) throws -> Request {
        let root: JSONValue
        do {
            root = try JSON.decode(JSONValue.self, from: line)
        } catch {
            throw SluiceError(.invalidRequest, "not a JSON object")
        }
        guard case .object(let o) = root else {
            throw SluiceError(.invalidRequest, "expected a JSON object, got \(root.typeName)")
        }
        guard let idValue = o["custom_id"], !idValue.isNull else {
            throw SluiceError(.invalidRequest, "missing \"custom_id\"")
        }
        guard case .string(let customID) = idValue, !customID.isEmpty else {
            throw SluiceError(.invalidRequest, "\"custom_id\" must be a non-empty string, got \(idValue.typeName)")
        }
        guard let method = o["method"]?.stringValue else {
            throw SluiceError(.invalidRequest, "missing \"method\" (must be \"POST\")")
        }
        guard method.uppercased() == "POST" else {
            throw SluiceError(.invalidRequest, "\"method\" is \"\(method)\"; only \"POST\" is supported")
        }
        guard let url = o["url"]?.stringValue else {
            throw SluiceError(.invalidRequest, "missing \"url\" (must be \"\(chatCompletionsURL)\")")
        }
        guard url == chatCompletionsURL else {
            throw SluiceError(.invalidRequest, "\"url\" is \"\(url)\"; only \"\(chatCompletionsURL)\" is supported")
        }
        guard let bodyValue = o["body"], !bodyValue.isNull else {
            throw SluiceError(.invalidRequest, "missing \"body\" (the chat completion request)")
        }
        guard case .object(let body) = bodyValue else {
            throw SluiceError(.invalidRequest, "\"body\" must be an object, got \(bodyValue.typeName)")
        }
        return Request(customID: customID, body: body)
    }

    /// The job for a request: its body with `id` set, `stream` false unless the body
    /// asks for a stream, `provider` filled in where the body names none, in the batch
    /// lane (`priority: batch`) unless the body says otherwise, and with `deadline` the
    /// batch's (the end of its completion window) unless the body gives its own.
    /// Returns the parsed job (the body is validated as the worker would) and the JSON
    /// to produce. Throws `SluiceError(.invalidRequest)` naming the field at fault.
    public static func job(
        _ request: Request, id: String, defaultProvider: String? = nil, limits: JobLimits = JobLimits(),
        deadline: Double? = nil
    ) throws -> (Job, JSONValue) {
        var body = request.body
        body["id"] = .string(id)
        if (body["priority"] ?? .null).isNull { body["priority"] = .string(JobPriority.batch.rawValue) }
        if let deadline, (body["deadline"] ?? .null).isNull { body["deadline"] = .number(deadline.rounded()) }
        if (body["stream"] ?? .null).isNull, (body["is_stream"] ?? .null).isNull { body["stream"] = .bool(false) }
        if let defaultProvider, (body["provider"] ?? .null).isNull { body["provider"] = .string(defaultProvider) }
        let value = JSONValue.object(body)
        do {
            return (try Job.parse(value, limits: limits), value)
        } catch let error as SluiceError {
            throw SluiceError(.invalidRequest, "body: \(error.message)")
        }
    }

    /// The `custom_id` of an output line, or nil if the line is not a result line.
    ///
    /// Resuming reads every line of the output, and lines can be large (the whole
    /// response is in them): lines in the layout `render` writes are read without
    /// parsing the body; any other valid result line is parsed in full.
    public static func customID(ofOutputLine line: some Collection<UInt8>) -> String? {
        let bytes = Array(line)
        if let id = fastCustomID(bytes) { return id }
        guard let value = try? JSON.decode(JSONValue.self, from: bytes),
              let id = value["custom_id"]?.stringValue, !id.isEmpty
        else { return nil }
        return id
    }

    /// `{"id":"batch_req_<hex>","custom_id":"…"` at the very start of the line.
    private static func fastCustomID(_ b: [UInt8]) -> String? {
        let head = Array(#"{"id":"batch_req_"#.utf8)
        guard b.count > head.count, b.starts(with: head) else { return nil }
        var i = head.count
        while i < b.count, b[i] != UInt8(ascii: "\"") {
            guard b[i] != UInt8(ascii: "\\") else { return nil }
            i += 1
        }
        let key = Array(#"","custom_id":""#.utf8)
        guard i + key.count <= b.count, Array(b[i..<(i + key.count)]) == key else { return nil }
        let start = i + key.count - 1  // the opening quote
        var j = start + 1
        var escaped = false
        while j < b.count {
            if b[j] == UInt8(ascii: "\\") {
                escaped = true
                j += 2
                continue
            }
            if b[j] == UInt8(ascii: "\"") { break }
            j += 1
        }
        guard j < b.count, j + 1 < b.count, b[j + 1] == UInt8(ascii: ",") else { return nil }
        if !escaped { return String(decoding: b[(start + 1)..<j], as: UTF8.self) }
        return try? JSON.decode(String.self, from: b[start...j])
    }

    /// The `response.status_code` for a result: 200 for a success; for a failure the
    /// provider's own error status where there is one, else the HTTP status that fits
    /// the error (400 bad request, 404 unknown model or prompt, 499 cancelled, 501 not
    /// supported, 502 provider or connection error, 504 timeout, 500 otherwise).
    public static func statusCode(_ response: UnifiedResponse) -> Int {
        switch response.status {
        case .succeeded: return 200
        case .timedOut: return 504
        case .cancelled: return 499
        case .failed: break
        }
        if let s = response.error?.providerStatus, (400...599).contains(s) { return s }
        switch response.error?.type {
        case "invalid_job", "invalid_request", "missing_variable": return 400
        case "unknown_provider", "unknown_model", "unknown_prompt": return 404
        case "cancelled": return 499
        case "unsupported": return 501
        case "provider_error", "connection_error", "provider_protocol_error": return 502
        case "timeout": return 504
        default: return 500
        }
    }

    /// The `error` of a failed result: the unified response's error type and message.
    public static func error(_ response: UnifiedResponse) -> (code: String, message: String)? {
        guard response.status != .succeeded else { return nil }
        if let e = response.error { return (e.type, e.message) }
        return (response.status.rawValue, "the job ended \(response.status.rawValue)")
    }

    /// One output line, newline included. `body` is JSON text (the result as the worker
    /// produced it, written through unchanged) or nil for no body.
    public static func render(
        requestID: String, customID: String, jobID: String, statusCode: Int, body: [UInt8]?,
        error: (code: String, message: String)?
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity((body?.count ?? 0) + 256)
        out += Array(#"{"id":"#.utf8)
        JSON.appendString(requestID, to: &out)
        out += Array(#","custom_id":"#.utf8)
        JSON.appendString(customID, to: &out)
        out += Array(#","response":{"status_code":"#.utf8)
        out += Array(String(statusCode).utf8)
        out += Array(#","request_id":"#.utf8)
        JSON.appendString(jobID, to: &out)
        out += Array(#","body":"#.utf8)
        if let body, !body.isEmpty {
            // JSON text has newlines only as whitespace between tokens (inside strings
            // they are escaped), so a blank keeps the value and the line whole.
            out += body.map { $0 == 0x0A || $0 == 0x0D ? 0x20 : $0 }
        } else {
            out += Array("null".utf8)
        }
        out += Array(#"},"error":"#.utf8)
        if let error {
            out += Array(#"{"code":"#.utf8)
            JSON.appendString(error.code, to: &out)
            out += Array(#","message":"#.utf8)
            JSON.appendString(error.message, to: &out)
            out += Array("}".utf8)
        } else {
            out += Array("null".utf8)
        }
        out += Array("}\n".utf8)
        return out
    }
}
