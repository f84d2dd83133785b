import Synchronization

/// Counters a test can read to see what the mock provider saw, for example that a client
/// that cancelled really went away (`abandonedStreams`, `activeStreams` back to 0).
public final class MockProviderStats: Sendable {
    public struct Snapshot: Sendable, Hashable {
        /// Requests to `/v1/chat/completions`.
        public var requests = 0
        /// Streams being written now.
        public var activeStreams = 0
        /// Streams that ran their script to the end (scripted connection drops included).
        public var completedStreams = 0
        /// Streams that ended early because the client went away.
        public var abandonedStreams = 0
    }

    private let counters = Mutex(Snapshot())

    public var snapshot: Snapshot {
        self.counters.withLock { $0 }
    }

    func requestReceived() {
        self.counters.withLock { $0.requests += 1 }
    }

    func streamStarted() {
        self.counters.withLock { $0.activeStreams += 1 }
    }

    func streamEnded(completed: Bool) {
        self.counters.withLock {
            $0.activeStreams -= 1
            if completed { $0.completedStreams += 1 } else { $0.abandonedStreams += 1 }
        }
    }
}
