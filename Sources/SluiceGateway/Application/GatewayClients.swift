import ServiceLifecycle

/// The gateway's clients (its job queue, job store and Redis subscriber) as a service of
/// its application: they stay open while the server runs and are closed once it has
/// stopped (an application's own services are shut down after its server).
struct GatewayClients: Service {
    let gateway: Gateway

    func run() async throws {
        try? await gracefulShutdown()
        gateway.shutdown()
    }
}
