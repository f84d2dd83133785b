import HTTPTypes
import Hummingbird
import SluiceCore

/// Liveness, readiness, Prometheus metrics and the configured providers.
///
/// What is for operators (metrics, which dependency is down and why) needs the admin key
/// (`gateway.admin_key_env`); anyone may learn whether the gateway is ready.
extension Gateway {
    func addOperationalRoutes(to router: Router<GatewayContext>) {
        router.get("/healthz") { _, _ in Response.json(["status": "ok"]) }
        router.get("/readyz") { request, _ in await self.readiness(detailed: self.keys.isAdmin(request)) }
        router.get("/metrics") { request, _ in
            try self.keys.requireAdmin(request, for: "/metrics")
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.render())))
        }
        router.get("/v1/providers") { request, _ in try self.providers(request) }
    }

    /// 200 when Redis answers PING and a Kafka broker answers a metadata request, both
    /// within 2 s; 503 otherwise. `detailed` (for operators) adds each check and its error.
    func readiness(detailed: Bool) async -> Response {
        async let redisCheck = check { try await self.store.ping() }
        async let kafkaCheck = check { try await self.queue.ping(timeoutMs: 2_000) }
        let (redisError, kafkaError) = await (redisCheck, kafkaCheck)
        func entry(_ error: String?) -> JSONValue {
            error.map { ["ok": false, "error": .string($0)] } ?? ["ok": true]
        }
        let ready = redisError == nil && kafkaError == nil
        if !ready {
            logger.warning("not ready", metadata: ["redis": "\(redisError ?? "ok")", "kafka": "\(kafkaError ?? "ok")"])
        }
        var body: [String: JSONValue] = ["status": ready ? "ready" : "unavailable"]
        if detailed { body["checks"] = ["redis": entry(redisError), "kafka": entry(kafkaError)] }
        return Response.json(.object(body), status: ready ? .ok : .serviceUnavailable)
    }

    private func check(_ body: @escaping @Sendable () async throws -> Void) async -> String? {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await body() }
                group.addTask {
                    try await Task.sleep(for: .seconds(3))
                    throw SluiceError(.timeout, "no answer within 3 s")
                }
                try await group.next()
                group.cancelAll()
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// The providers and model aliases the caller's tenant may use, by name and kind:
    /// never a key, a URL or an API version.
    func providers(_ request: Request) throws -> Response {
        let tenant = try keys.tenant(of: request)
        let policy = keys.policy(of: tenant)
        let providers: [JSONValue] = config.providers.filter { policy.providers?.contains($0.name) ?? true }.map { p in
            ["name": .string(p.name), "kind": .string(p.kind.rawValue)]
        }
        var models: [String: JSONValue] = [:]
        for (alias, target) in config.models {
            guard let (provider, model) = try? config.resolve(provider: nil, model: alias),
                  policy.allows(provider: provider.name, model: alias, resolvedModel: model) else { continue }
            models[alias] = ["provider": target.provider.map(JSONValue.string) ?? .null, "model": .string(target.model)]
        }
        return Response.json(["object": "list", "data": .array(providers), "models": .object(models)])
    }
}
