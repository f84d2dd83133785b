import HTTPTypes
import Hummingbird
import SluiceCore
import SluiceRedis

/// Liveness, readiness, Prometheus metrics and the configured providers.
extension Gateway {
    func addOperationalRoutes(to router: Router<BasicRequestContext>) {
        router.get("/healthz") { _, _ in Response.json(["status": "ok"]) }
        router.get("/readyz") { _, _ in await self.readiness() }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.render())))
        }
        router.get("/v1/providers") { request, _ in try self.providers(request) }
    }

    /// 200 when Redis answers PING and a Kafka broker answers a metadata request, both
    /// within 2 s; 503 naming what is not reachable otherwise.
    func readiness() async -> Response {
        async let redisCheck = check {
            let reply = try await self.redis.execute(RedisCommand("PING"))
            if let error = reply.errorMessage { throw SluiceError(.internal, error) }
        }
        async let kafkaCheck = check { try await self.kafkaProbe.ping(timeoutMs: 2_000) }
        let (redisError, kafkaError) = await (redisCheck, kafkaCheck)
        func entry(_ error: String?) -> JSONValue {
            error.map { ["ok": false, "error": .string($0)] } ?? ["ok": true]
        }
        let ready = redisError == nil && kafkaError == nil
        return Response.json(
            ["status": ready ? "ready" : "unavailable", "checks": ["redis": entry(redisError), "kafka": entry(kafkaError)]],
            status: ready ? .ok : .serviceUnavailable)
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

    /// The configured providers and model aliases; never a key.
    func providers(_ request: Request) throws -> Response {
        _ = try keys.tenant(of: request)
        let providers: [JSONValue] = config.providers.map { p in
            var o: [String: JSONValue] = ["name": .string(p.name), "kind": .string(p.kind.rawValue), "base_url": .string(p.baseURL)]
            if let v = p.apiVersion { o["api_version"] = .string(v) }
            return .object(o)
        }
        var models: [String: JSONValue] = [:]
        for (alias, target) in config.models {
            models[alias] = ["provider": target.provider.map(JSONValue.string) ?? .null, "model": .string(target.model)]
        }
        return Response.json(["object": "list", "data": .array(providers), "models": .object(models)])
    }
}
