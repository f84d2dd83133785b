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

    init(_ keys: [SluiceConfig.APIKey], environment: [String: String]) {
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
