import Foundation
import HTTPTypes
import Hummingbird
import SluiceCore

/// Reading request bodies: declared as JSON (415 otherwise), at most
/// `gateway.max_body_bytes` (413 beyond), a JSON object (400 otherwise), and fields whose
/// errors name them.
extension Gateway {
    /// The body, collected into the request (so that `watchingDisconnect` can still
    /// watch the connection afterwards).
    ///
    /// Only a body declared `application/json` is read: a browser sends another site's
    /// `text/plain` or form POST without asking, but asks (CORS preflight) before a JSON
    /// one, and the gateway allows no other origin unless `gateway.cors_origins` says so.
    func readBody(_ request: inout Request) async throws -> [UInt8] {
        guard Gateway.isJSON(contentType: request.headers[.contentType]) else {
            throw APIError(
                .unsupportedMediaType, "invalid_request_error",
                "the request body must be JSON: send \"Content-Type: application/json\"", param: "Content-Type",
                code: "unsupported_media_type")
        }
        let limit = config.gateway.maxBodyBytes
        let tooLarge = APIError(
            .contentTooLarge, "invalid_request_error",
            "the request body is larger than \(limit) bytes (gateway.max_body_bytes)", code: "request_too_large")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw tooLarge }
        do {
            let buffer = try await request.collectBody(upTo: limit)
            return Array(buffer.readableBytesView)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        }
    }

    /// Whether a `Content-Type` is `application/json` or `application/*+json`, with or
    /// without parameters.
    static func isJSON(contentType: String?) -> Bool {
        guard let contentType else { return false }
        let type = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return type == "application/json" || (type.hasPrefix("application/") && type.hasSuffix("+json"))
    }

    /// The body as a JSON object.
    func readJSONObject(_ request: inout Request) async throws -> [String: JSONValue] {
        let bytes = try await readBody(&request)
        return try Gateway.parseJSONObject(bytes)
    }

    static func parseJSONObject(_ bytes: [UInt8]) throws -> [String: JSONValue] {
        guard bytes.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) else {
            throw APIError.badRequest("the request body is empty; send a JSON object", code: "invalid_json")
        }
        let value: JSONValue
        do {
            value = try JSON.decode(JSONValue.self, from: bytes)
        } catch {
            throw APIError.badRequest("the request body is not valid JSON", code: "invalid_json")
        }
        guard case .object(let object) = value else {
            throw APIError.badRequest("the request body must be a JSON object, got \(value.typeName)", code: "invalid_json")
        }
        return object
    }
}

/// Typed access to a request body's fields; every error names the field.
struct RequestFields {
    let object: [String: JSONValue]

    init(_ object: [String: JSONValue]) { self.object = object }

    subscript(key: String) -> JSONValue? {
        guard let v = object[key], !v.isNull else { return nil }
        return v
    }

    func requiredString(_ key: String) throws -> String {
        guard let v = self[key] else {
            throw APIError.badRequest("missing required field \"\(key)\"", param: key, code: "missing_field")
        }
        guard case .string(let s) = v, !s.isEmpty else {
            throw APIError.badRequest("\"\(key)\" must be a non-empty string, got \(v.typeName)", param: key, code: "invalid_type")
        }
        return s
    }

    func string(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard case .string(let s) = v else {
            throw APIError.badRequest("\"\(key)\" must be a string, got \(v.typeName)", param: key, code: "invalid_type")
        }
        return s
    }

    /// A boolean; like LLMstudio's "any"-typed `is_stream`, also `"true"`/`"false"` and 0/1.
    func bool(_ key: String) throws -> Bool? {
        guard let v = self[key] else { return nil }
        switch v {
        case .bool(let b): return b
        case .string(let s) where ["true", "false"].contains(s.lowercased()): return s.lowercased() == "true"
        case .number(let n) where n == 0 || n == 1: return n == 1
        default:
            throw APIError.badRequest("\"\(key)\" must be a boolean, got \(v.typeName)", param: key, code: "invalid_type")
        }
    }

    func object(_ key: String) throws -> [String: JSONValue]? {
        guard let v = self[key] else { return nil }
        guard case .object(let o) = v else {
            throw APIError.badRequest("\"\(key)\" must be an object, got \(v.typeName)", param: key, code: "invalid_type")
        }
        return o
    }

    /// The OpenAI hyperparameters given at the top level.
    var hyperparameters: [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for k in Job.hyperparameterKeys { if let v = self[k] { out[k] = v } }
        return out
    }

    /// Whether the client asked for the usage chunk (`stream_options.include_usage`).
    var includeUsage: Bool {
        self["stream_options"]?["include_usage"]?.boolValue ?? false
    }
}
