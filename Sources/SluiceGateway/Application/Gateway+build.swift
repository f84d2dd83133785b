import Hummingbird
import ServiceLifecycle

extension Gateway {
    /// Every route of the gateway. `/openapi.json` describes exactly these (a test
    /// compares the two).
    public func buildRouter() -> Router<GatewayContext> {
        let router = Router(context: GatewayContext.self)
        // Middleware first: Hummingbird wraps each route as it is added.
        router.add(middleware: RequestMetricsMiddleware(metrics: metrics))
        router.add(middleware: JSONErrorMiddleware(logger: logger))
        if !config.gateway.corsOrigins.isEmpty {
            router.add(middleware: CORSMiddleware(origins: Set(config.gateway.corsOrigins)))
        }

        addOperationalRoutes(to: router)
        addDocsRoutes(to: router)
        addJobRoutes(to: router)
        addUsageRoutes(to: router)
        addOpenAIRoutes(to: router)
        addLLMstudioRoutes(to: router)
        addPortkeyRoutes(to: router)
        addPassthroughRoutes(to: router)
        return router
    }

    /// The application, ready to run as a service, as Hummingbird's template builds one:
    /// the router, the server's configuration, and the gateway's clients as a service that
    /// closes them once the server has stopped. `onServerRunning` learns the port.
    public func buildApplication(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let (host, port) = try Gateway.parseListen(config.gateway.listen)
        return Application(
            router: buildRouter(),
            // Hummingbird's default backlog of 256 overflows when a batch opens a thousand
            // streams at once; each dropped SYN costs the client a 1 s retransmit. The
            // kernel caps it at net.core.somaxconn.
            configuration: .init(address: .hostname(host, port: port), serverName: "sluice", backlog: 4096),
            services: [GatewayClients(gateway: self)],
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
