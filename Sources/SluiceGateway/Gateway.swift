import Foundation
import HTTPTypes
import Hummingbird
import Logging
import SluiceCore
import SluiceKafka
import SluiceRedis

/// `sluice gateway`: the HTTP front. It only submits jobs to Kafka, subscribes to their
/// events on Redis and converts; the work happens in the workers.
public struct Gateway: Sendable {
    let config: SluiceConfig
    let logger: Logger
    let producer: KafkaProducer
    let redis: RedisConnection
    let subscriber: RedisSubscriber
    let follower: JobEventFollower
    /// Bearer key → tenant; empty means open (local use).
    let apiKeys: [String: String]

    public init(config: SluiceConfig, logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.config = config
        self.logger = logger
        let redisConfig = try RedisConfiguration(url: config.redis.url)
        self.redis = RedisConnection(configuration: redisConfig, logger: logger)
        self.subscriber = RedisSubscriber(configuration: redisConfig, logger: logger)
        self.producer = try KafkaProducer(brokers: config.kafka.brokers, properties: config.kafka.properties, logger: logger)
        self.follower = JobEventFollower(redis: redis, subscriber: subscriber, heartbeat: .seconds(15))
        var keys: [String: String] = [:]
        for k in config.gateway.apiKeys {
            if let key = k.key ?? k.keyEnv.flatMap({ environment[$0] }), !key.isEmpty { keys[key] = k.tenant }
        }
        self.apiKeys = keys
    }

    /// Stops the clients the gateway owns (after the server has stopped).
    public func shutdown() {
        producer.shutdown(timeoutMs: 5_000)
        subscriber.shutdown()
        redis.shutdown()
    }

    public func buildRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/healthz") { _, _ in Response.json(["status": "ok"]) }
        router.post("/v1/jobs") { request, context in try await self.submitJob(request, context: context) }
        router.get("/v1/jobs/:id") { request, context in try await self.jobStatus(request, context: context) }
        router.get("/v1/jobs/:id/events") { request, context in try await self.jobEvents(request, context: context) }
        return router
    }

    /// The application, ready to run as a service; `onServerRunning` learns the port.
    public func buildApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let (host, port) = try Gateway.parseListen(config.gateway.listen)
        return Application(
            router: buildRouter(),
            configuration: .init(address: .hostname(host, port: port), serverName: "sluice"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    static func parseListen(_ listen: String) throws -> (String, Int) {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw SluiceError(.config, "gateway.listen must be host:port, got \"\(listen)\"")
        }
        let host = String(listen[..<colon])
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    // MARK: Auth

    /// The tenant of the request's bearer key; with no keys configured, "default".
    func tenant(of request: Request) throws -> String {
        guard !apiKeys.isEmpty else { return "default" }
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else {
            throw APIError(.unauthorized, "authentication_error", "missing API key: send \"Authorization: Bearer KEY\"")
        }
        let key = String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        guard let tenant = apiKeys[key] else {
            throw APIError(.unauthorized, "authentication_error", "invalid API key")
        }
        return tenant
    }

    /// Checks that the job exists and belongs to `tenant`; returns its stored meta.
    func requireJob(_ id: String, tenant: String) async throws {
        let replies = try await redis.execute([
            RedisCommand("HGET", RedisKeys.meta(id), "tenant"),
            RedisCommand("EXISTS", RedisKeys.events(id), RedisKeys.result(id)),
        ])
        let owner = replies[0].string
        let exists = owner != nil || (replies[1].int ?? 0) > 0
        // A job submitted straight to Kafka has no meta: it belongs to the default tenant.
        guard exists, (owner ?? "default") == tenant else {
            throw APIError.notFound("no job \"\(id)\"")
        }
    }

    // MARK: Jobs

    func readBody(_ request: Request) async throws -> [UInt8] {
        do {
            let buffer = try await request.body.collect(upTo: config.gateway.maxBodyBytes)
            return Array(buffer.readableBytesView)
        } catch {
            throw APIError(.contentTooLarge, "request_too_large", "the request body is larger than \(config.gateway.maxBodyBytes) bytes")
        }
    }

    func submitJob(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let tenant = try tenant(of: request)
        let body = try await readBody(request)
        var job: Job
        do {
            job = try Job.parse(body)
        } catch let error as SluiceError {
            throw APIError.badRequest(error.message)
        }
        job.tenant = tenant
        do {
            _ = try config.resolve(provider: job.provider, model: job.model)
        } catch let error as SluiceError {
            throw APIError.badRequest(error.message)
        }
        try await submit(job)
        return Response.json([
            "id": .string(job.id),
            "status": "queued",
            "status_url": .string("/v1/jobs/\(job.id)"),
            "events_url": .string("/v1/jobs/\(job.id)/events"),
        ], status: .accepted)
    }

    /// Records the job's tenant, then produces it.
    func submit(_ job: Job) async throws {
        let ttl = String(config.redis.eventTTLSeconds)
        let meta = RedisKeys.meta(job.id)
        let replies = try await redis.execute([
            RedisCommand("HSET", meta, "tenant", job.tenant, "submitted_at", String(Date().timeIntervalSince1970)),
            RedisCommand("EXPIRE", meta, ttl),
        ])
        if case .error(let e) = replies[0] { throw APIError(.serviceUnavailable, "unavailable", "Redis refused the job: \(e)") }
        do {
            try await producer.send(topic: config.kafka.requestsTopic, key: job.id, value: try JSON.encode(job.encoded()))
        } catch {
            logger.error("cannot submit a job to Kafka: \(error)")
            throw APIError(.serviceUnavailable, "unavailable", "the job queue is not reachable; try again later")
        }
    }

    func jobStatus(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let tenant = try tenant(of: request)
        let id = try context.parameters.require("id")
        try await requireJob(id, tenant: tenant)
        let replies = try await redis.execute([
            RedisCommand("GET", RedisKeys.result(id)),
            RedisCommand("XREVRANGE", RedisKeys.events(id), "+", "-", "COUNT", "1"),
        ])
        if case .bulk(let result) = replies[0], let value = try? JSON.decode(JSONValue.self, from: result) {
            return Response.json(["id": .string(id), "status": value["status"] ?? "succeeded", "result": value])
        }
        var status: JSONValue = "queued"
        var lastEvent: JSONValue = .null
        if let entry = replies[1].array?.first, let fields = entry.array?.last?.array, fields.count >= 2,
           case .bulk(let envelope) = fields[1], let event = try? JSON.decode(JSONValue.self, from: envelope) {
            status = "running"
            lastEvent = event
        }
        return Response.json(["id": .string(id), "status": status, "result": .null, "last_event": lastEvent])
    }

    func jobEvents(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let tenant = try tenant(of: request)
        let id = try context.parameters.require("id")
        try await requireJob(id, tenant: tenant)
        let lastEventID = request.headers[HTTPField.Name("Last-Event-ID")!].flatMap { Int($0) }
            ?? request.uri.queryParameters.get("last_event_id").flatMap { Int($0) } ?? 0
        let follower = self.follower
        let logger = self.logger
        return Response(status: .ok, headers: SSEFormat.headers, body: ResponseBody { writer in
            do {
                try await follower.follow(jobID: id, afterSeq: lastEventID) { item in
                    switch item {
                    case .event(let seq, let name, let envelope):
                        try await writer.write(SSEFormat.event(id: seq, name: name, data: envelope))
                    case .heartbeat:
                        try await writer.write(SSEFormat.heartbeat)
                    }
                }
            } catch {
                logger.debug("event stream ended: \(error)", metadata: ["job_id": "\(id)"])
            }
            try await writer.finish(nil)
        })
    }
}
