import Hummingbird
import Synchronization

/// Fires once the client of a request has closed its side of the connection, so that a
/// relay stops at once: its Redis subscription is freed and, for a synchronous
/// completion, its job is cancelled.
final class ClientDisconnect: Sendable {
    private struct State {
        var fired = false
        var nextToken = 0
        var handlers: [Int: @Sendable () -> Void] = [:]
    }

    private let state = Mutex(State())

    var hasFired: Bool { state.withLock { $0.fired } }

    func fire() {
        let handlers = state.withLock { state -> [@Sendable () -> Void] in
            guard !state.fired else { return [] }
            state.fired = true
            defer { state.handlers = [:] }
            return Array(state.handlers.values)
        }
        for handler in handlers { handler() }
    }

    /// Runs `handler` when the client goes (at once if it has gone). Returns a token for
    /// `remove`, or nil when it ran at once.
    func onFire(_ handler: @escaping @Sendable () -> Void) -> Int? {
        let token = state.withLock { state -> Int? in
            guard !state.fired else { return nil }
            state.nextToken += 1
            state.handlers[state.nextToken] = handler
            return state.nextToken
        }
        if token == nil { handler() }
        return token
    }

    func remove(_ token: Int) {
        _ = state.withLock { $0.handlers.removeValue(forKey: token) }
    }
}

extension Request {
    /// Runs `operation` with a signal that fires when the client closes the connection.
    ///
    /// Hummingbird watches the inbound side of the connection for the duration; the
    /// connection is closed once the response has been written, so responses produced
    /// this way say `Connection: close`.
    func watchingDisconnect<Value: Sendable>(
        isolation: isolated (any Actor)? = #isolation,
        _ operation: (ClientDisconnect) async throws -> Value
    ) async throws -> Value {
        let signal = ClientDisconnect()
        return try await body.consumeWithInboundCloseHandler { _ in
            try await operation(signal)
        } onInboundClosed: {
            signal.fire()
        }
    }
}
