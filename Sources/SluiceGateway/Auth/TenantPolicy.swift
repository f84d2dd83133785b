import SluiceCore

/// The providers and models a tenant may run (`gateway.api_keys[].providers`, `models`):
/// every configured one where a list is absent.
struct TenantPolicy: Sendable {
    var providers: Set<String>?
    /// Aliases of `models`, or `provider/model`.
    var models: Set<String>?

    /// Whether a job may run `model` (as the job names it: an alias, `provider/model` or
    /// a bare name) on `provider`, resolved to `resolvedModel`.
    func allows(provider: String, model requested: String?, resolvedModel: String) -> Bool {
        if let providers, !providers.contains(provider) { return false }
        guard let models else { return true }
        if let requested, models.contains(requested) { return true }
        return models.contains("\(provider)/\(resolvedModel)")
    }
}

extension Gateway {
    /// Refuses (403, naming the model) a job whose tenant may not run its model, any of
    /// its fallbacks, or its prompt template's model.
    func authorize(_ job: Job) throws {
        let policy = keys.policy(of: job.tenant)
        guard policy.providers != nil || policy.models != nil else { return }
        var targets: [(provider: String?, model: String?)] = []
        switch job.request {
        case .passthrough(let body):
            targets.append((job.provider, job.model ?? body["model"]?.stringValue))
        case .prompt(let id, _) where job.model == nil || job.provider == nil:
            targets.append(try loadPrompt(id).target(provider: job.provider, model: job.model, config: config))
        default:
            targets.append((job.provider, job.model))
        }
        targets += job.fallbacks.map { ($0.provider, $0.model) }
        for (index, target) in targets.enumerated() {
            let named = target.model ?? target.provider ?? ""
            guard let (provider, model) = try? config.resolve(provider: target.provider, model: target.model) else {
                // A fallback that names nothing configured is skipped by the worker; the
                // first target was checked by the route. Refuse only what would run.
                if index == 0, target.model == nil {
                    throw APIError.forbidden("this API key may only use named models; give \"model\"", param: "model", code: "model_not_allowed")
                }
                continue
            }
            guard policy.allows(provider: provider.name, model: target.model, resolvedModel: model) else {
                throw APIError.forbidden(
                    "the model \"\(named)\" (provider \"\(provider.name)\") is not allowed for this API key",
                    param: index == 0 ? "model" : "fallbacks[\(index - 1)]", code: "model_not_allowed")
            }
        }
    }
}
