import HTTPTypes
import Hummingbird
import SluiceCore

/// An error answered as JSON `{"error": {"type", "message"}}` with its HTTP status.
struct APIError: Error, HTTPResponseError {
    var status: HTTPResponse.Status
    var type: String
    var message: String

    init(_ status: HTTPResponse.Status, _ type: String, _ message: String) {
        self.status = status
        self.type = type
        self.message = message
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "invalid_request_error", message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, "not_found", message) }

    var headers: HTTPFields { [.contentType: "application/json"] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body: JSONValue = ["error": ["type": .string(type), "message": .string(message)]]
        let bytes = (try? JSON.encode(body)) ?? []
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension Response {
    static func json(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        json((try? JSON.encode(value)) ?? [], status: status)
    }
}
