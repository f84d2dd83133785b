import Hummingbird
import NIOCore

/// The gateway's request context: Hummingbird's basic one, plus the event loop that owns
/// the request's connection, where an event stream's relay runs (`sseResponse`).
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The event loop of the request's connection.
    public let eventLoop: any EventLoop

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        eventLoop = source.channel.eventLoop
    }
}
