import HummingbirdCore
import NIOConcurrencyHelpers

/// Counters a test can read to see what the mock provider saw, for example that a client
/// that cancelled really went away (`abandonedStreams`, `activeStreams` back to 0).
public final class MockProviderStats: Sendable {
    public struct Snapshot: Sendable, Hashable {
        /// Completion requests, in any of the wire formats.
        public var requests = 0
        /// Streams being written now.
        public var activeStreams = 0
        /// The most streams written at once so far.
        public var peakActiveStreams = 0
        /// Streams that ran their script to the end (scripted connection drops included).
        public var completedStreams = 0
        /// Streams that ended early because the client went away.
        public var abandonedStreams = 0
        /// TCP connections accepted so far.
        public var connectionsOpened = 0
        /// TCP connections open now.
        public var openConnections = 0
        /// Requests answered 429 by the server's rate limit (``MockRateLimit``).
        public var rateLimited = 0
        /// The `traceparent` header of the latest completion request that had one: the
        /// trace context the caller passed on (the mock records no spans of its own).
        public var lastTraceparent: String?
    }

    fileprivate let counters = NIOLockedValueBox(Snapshot())

    public var snapshot: Snapshot {
        self.counters.withLockedValue { $0 }
    }

    func requestReceived(traceparent: String? = nil) {
        self.counters.withLockedValue {
            $0.requests += 1
            if let traceparent { $0.lastTraceparent = traceparent }
        }
    }

    func rateLimited() {
        self.counters.withLockedValue { $0.rateLimited += 1 }
    }

    func streamStarted() {
        self.counters.withLockedValue {
            $0.activeStreams += 1
            $0.peakActiveStreams = max($0.peakActiveStreams, $0.activeStreams)
        }
    }

    func streamEnded(completed: Bool) {
        self.counters.withLockedValue {
            $0.activeStreams -= 1
            if completed { $0.completedStreams += 1 } else { $0.abandonedStreams += 1 }
        }
    }
}

/// Counts connections for ``MockProviderStats``; never refuses one.
struct ConnectionCounter: AvailableConnectionsDelegate {
    let stats: MockProviderStats

    func connectionOpened() {
        self.stats.connectionOpened()
    }

    func connectionClosed() {
        self.stats.connectionClosed()
    }

    func isAcceptingNewConnections() -> Bool { true }
}

extension MockProviderStats {
    fileprivate func connectionOpened() {
        self.counters.withLockedValue {
            $0.connectionsOpened += 1
            $0.openConnections += 1
        }
    }

    fileprivate func connectionClosed() {
        self.counters.withLockedValue { $0.openConnections -= 1 }
    }
}
