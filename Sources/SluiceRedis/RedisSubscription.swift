
/// What a reader of a channel receives.
public enum RedisSubscriptionEvent: Sendable, Equatable {
    /// A message published to the channel.
    case message([UInt8])
    /// The connection to Redis broke and the channel has just been subscribed again:
    /// messages published in between are lost. Re-sync from the source of truth (for a
    /// job's stream, read what was stored) before relying on later messages.
    case resubscribed
}

/// One reader's view of a channel, from `RedisSubscriber.subscribe(to:)`: an asynchronous
/// sequence of events, single-pass and single-consumer.
///
/// The reader's slot (and, if it was the last reader, the channel's `SUBSCRIBE`) is given
/// back as soon as any of these happens: iteration ends (`break`, `return`, a thrown
/// error), the iterating task is cancelled, `cancel()` is called, or every copy of the
/// subscription and of its iterator is gone. Events still buffered are then discarded.
///
/// The sequence ends (`nil`) when the subscription is cancelled or the subscriber shuts
/// down; it throws `RedisError.Code.subscriptionOverflow` when a bounded buffer overflows.
public struct RedisSubscription: AsyncSequence, Sendable {
    public typealias Element = RedisSubscriptionEvent

    /// How many events a reader that does not keep up may have waiting.
    public enum BufferingPolicy: Sendable, Hashable {
        /// Buffer everything. Right when every reader drains promptly (an SSE relay writes
        /// each message to a socket); memory grows with a reader that stalls.
        case unbounded
        /// Buffer at most `maxEvents`. A reader that falls further behind is unsubscribed
        /// and its sequence throws `RedisError.Code.subscriptionOverflow` (rather than
        /// silently skipping messages).
        case bounded(maxEvents: Int)
    }

    /// The channel this subscription reads.
    public var channel: String { sink.channel }

    private let sink: SubscriptionSink
    private let lifetime: SubscriptionLifetime

    init(sink: SubscriptionSink) {
        self.sink = sink
        lifetime = SubscriptionLifetime(sink)
    }

    /// Ends the subscription now: frees the reader's slot and ends iteration.
    public func cancel() {
        sink.cancel()
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(sink: sink, subscription: lifetime, iteration: SubscriptionLifetime(sink))
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate let sink: SubscriptionSink
        /// Keeps the subscription alive while iterating, even if the sequence is dropped.
        fileprivate let subscription: SubscriptionLifetime
        /// Cancels the subscription when the iteration ends.
        fileprivate let iteration: SubscriptionLifetime

        public mutating func next() async throws -> RedisSubscriptionEvent? {
            try await sink.next()
        }
    }
}

/// Cancels its sink when the last reference to it goes away.
private final class SubscriptionLifetime: Sendable {
    let sink: SubscriptionSink

    init(_ sink: SubscriptionSink) {
        self.sink = sink
    }

    deinit {
        sink.cancel()
    }
}

/// The per-reader buffer between the subscriber's thread and the reading task.
final class SubscriptionSink: Sendable {
    let channel: String
    let id: UInt64
    private let maxBuffered: Int?
    private let state = Locked(State())
    /// Tells the subscriber to free the reader's slot; called once.
    private let onTermination: @Sendable (SubscriptionSink) -> Void

    private struct State {
        var buffer = FIFO<RedisSubscriptionEvent>()
        var waiter: CheckedContinuation<RedisSubscriptionEvent?, any Error>?
        var end: End?

        enum Taken { case event(RedisSubscriptionEvent), ended(RedisError?), empty }

        mutating func take() -> Taken {
            if let event = buffer.popFirst() { return .event(event) }
            switch end {
            case nil:
                return .empty
            case .failed(let error):
                end = .finished  // report the error once
                return .ended(error)
            case .finished, .cancelled:
                return .ended(nil)
            }
        }
    }

    enum End {
        case finished
        case cancelled
        case failed(RedisError)
    }

    init(
        channel: String,
        id: UInt64,
        policy: RedisSubscription.BufferingPolicy,
        onTermination: @escaping @Sendable (SubscriptionSink) -> Void
    ) {
        self.channel = channel
        self.id = id
        if case .bounded(let maxEvents) = policy {
            maxBuffered = max(1, maxEvents)
        } else {
            maxBuffered = nil
        }
        self.onTermination = onTermination
    }

    /// Called by the subscriber's thread.
    func deliver(_ event: RedisSubscriptionEvent) {
        enum Action { case none, resume(CheckedContinuation<RedisSubscriptionEvent?, any Error>), overflow }
        let action = state.withLock { state -> Action in
            if state.end != nil { return .none }
            if let waiter = state.waiter {
                state.waiter = nil
                return .resume(waiter)
            }
            if let maxBuffered, state.buffer.count >= maxBuffered { return .overflow }
            state.buffer.append(event)
            return .none
        }
        switch action {
        case .none:
            break
        case .resume(let waiter):
            waiter.resume(returning: event)
        case .overflow:
            finish(.failed(RedisError(
                .subscriptionOverflow,
                "a reader of channel \"\(channel)\" fell more than \(maxBuffered ?? 0) events behind and was unsubscribed"
            )))
        }
    }

    func next() async throws -> RedisSubscriptionEvent? {
        if Task.isCancelled {
            cancel()
            return nil
        }
        switch state.withLock({ $0.take() }) {
        case .event(let event): return event
        case .ended(let error?): throw error
        case .ended(nil): return nil
        case .empty: break
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let taken = state.withLock { state -> State.Taken in
                    let taken = state.take()
                    if case .empty = taken {
                        precondition(state.waiter == nil, "a RedisSubscription supports one consumer at a time")
                        state.waiter = continuation
                    }
                    return taken
                }
                switch taken {
                case .event(let event): continuation.resume(returning: event)
                case .ended(let error?): continuation.resume(throwing: error)
                case .ended(nil): continuation.resume(returning: nil)
                case .empty: break
                }
            }
        } onCancel: {
            cancel()
        }
    }

    func cancel() {
        finish(.cancelled)
    }

    /// Ends the sequence. `.finished` keeps what is buffered for the reader; the others
    /// discard it. The first call tells the subscriber to free the slot.
    func finish(_ end: End) {
        let (waiter, first) = state.withLock { state -> (CheckedContinuation<RedisSubscriptionEvent?, any Error>?, Bool) in
            guard state.end == nil else { return (nil, false) }
            state.end = end
            if case .finished = end {} else {
                state.buffer.removeAll()
            }
            let waiter = state.waiter
            state.waiter = nil
            if waiter != nil, case .failed = end {
                state.end = .finished  // the waiter reports the error
            }
            return (waiter, true)
        }
        if let waiter {
            if case .failed(let error) = end {
                waiter.resume(throwing: error)
            } else {
                waiter.resume(returning: nil)
            }
        }
        if first {
            onTermination(self)
        }
    }
}
