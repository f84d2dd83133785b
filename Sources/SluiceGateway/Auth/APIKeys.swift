import Foundation
import HTTPTypes
import Hummingbird
import SluiceCore

/// The gateway's API keys (`gateway.api_keys`), each mapped to a tenant. With none
/// configured the gateway is open and every request belongs to the tenant `default`.
///
/// A key is read from, in order: `Authorization: Bearer KEY` (OpenAI's SDK and most
/// clients), `Authorization: Token KEY` (Smarter), `x-portkey-api-key` (Portkey's SDK),
/// `x-api-key`. Keys are never logged or echoed, not even in part.
struct APIKeyTable: Sendable {
    private let tenants: [String: String]
    private let policies: [String: TenantPolicy]
    /// The operators' key (`gateway.admin_key_env`), for `/metrics` and detailed readiness.
    private let adminKey: [UInt8]?

    init(_ keys: [SluiceConfig.APIKey], admin: (env: String?, literal: String?) = (nil, nil), environment: [String: String]) {
        let adminKey = admin.literal ?? admin.env.flatMap { environment[$0] }
        self.adminKey = adminKey.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        var tenants: [String: String] = [:]
        var policies: [String: TenantPolicy] = [:]
        for k in keys {
            if let key = k.key ?? k.keyEnv.flatMap({ environment[$0] }), !key.isEmpty { tenants[key] = k.tenant }
            policies[k.tenant] = TenantPolicy(providers: k.providers.map(Set.init), models: k.models.map(Set.init))
        }
        self.tenants = tenants
        self.policies = policies
    }

    /// What `tenant` may run; everything on an open gateway.
    func policy(of tenant: String) -> TenantPolicy {
        policies[tenant] ?? TenantPolicy(providers: nil, models: nil)
    }

    var isOpen: Bool { tenants.isEmpty }

    /// The tenant of the request's key. Without a valid key, throws an error with
    /// `failure` as its status: 401 everywhere, 403 where an API says so (Smarter).
    func tenant(of request: Request, failure: HTTPResponse.Status = .unauthorized) throws -> String {
        guard !isOpen else { return "default" }
        let type = failure == .forbidden ? "permission_error" : "authentication_error"
        guard let key = APIKeyTable.presentedKey(request.headers) else {
            throw APIError(failure, type, "missing API key: send \"Authorization: Bearer KEY\"", code: "missing_api_key")
        }
        guard let tenant = tenants[key] else {
            throw APIError(failure, type, "invalid API key", code: "invalid_api_key")
        }
        return tenant
    }

    /// Whether the request may see what is for operators: it carries the admin key, or
    /// no admin key is configured and the gateway is open (a local set-up).
    func isAdmin(_ request: Request) -> Bool {
        guard let adminKey else { return isOpen }
        guard let presented = APIKeyTable.presentedKey(request.headers) else { return false }
        return APIKeyTable.constantTimeEqual(Array(presented.utf8), adminKey)
    }

    /// Throws unless `isAdmin`: 401 without the right key, 403 on a gateway with tenant
    /// keys but no admin key configured.
    func requireAdmin(_ request: Request, for what: String) throws {
        guard !isAdmin(request) else { return }
        guard adminKey != nil else {
            throw APIError.forbidden("\(what) needs the admin key, and none is configured: set gateway.admin_key_env", code: "admin_key_required")
        }
        throw APIError(.unauthorized, "authentication_error", "\(what) needs the admin key: send \"Authorization: Bearer ADMIN_KEY\"", code: "admin_key_required")
    }

    /// Compares without stopping at the first difference, so the time taken says nothing
    /// of how much of a guess was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    static func presentedKey(_ headers: HTTPFields) -> String? {
        if let value = headers[.authorization] {
            for scheme in ["bearer ", "token "] where value.count > scheme.count && value.lowercased().hasPrefix(scheme) {
                let key = value.dropFirst(scheme.count).trimmingCharacters(in: .whitespaces)
                if !key.isEmpty { return key }
            }
        }
        for name in [HTTPField.Name.portkeyAPIKey, .xAPIKey] {
            if let key = headers[name]?.trimmingCharacters(in: .whitespaces), !key.isEmpty { return key }
        }
        return nil
    }
}
