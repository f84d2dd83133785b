import Synchronization

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
/// sequence of events, single-pass and single-consumer; or, for a reader that handles
/// whatever has piled up at once, `nextBatch(into:)` (not both on one subscription).
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

    /// Waits until at least one event is buffered, then moves every buffered event into
    /// `events` (emptied first), oldest first: one wake-up and one lock for any number of
    /// events, for a reader that can handle them together (an SSE relay writing them to
    /// its socket at once).
    ///
    /// Returns true with `events` possibly empty after `wake()`, and false once the
    /// subscription has ended (as `next()` returning nil). Throws as `next()` does; the
    /// subscription is cancelled if the task is. Pass the same array each time: its
    /// storage is swapped with the subscription's, so a steady reader allocates nothing.
    /// One consumer at a time, and not mixed with iteration.
    public func nextBatch(into events: inout [RedisSubscriptionEvent]) async throws -> Bool {
        try await sink.nextBatch(into: &events)
    }

    /// Makes a pending `nextBatch` return now (or the next one return at once), even
    /// with nothing buffered: how another task (a heartbeat timer, a disconnect handler)
    /// gets the reader's attention without a second queue.
    public func wake() {
        sink.wake()
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
///
/// The thread appends under the sink's own lock (never a lock shared with other readers)
/// and resumes the reader only if it is waiting; events that arrive before the reader
/// runs pile up and are taken together by `nextBatch`.
final class SubscriptionSink: Sendable {
    let channel: String
    let id: UInt64
    private let maxBuffered: Int?
    private let state = Mutex(State())
    /// Tells the subscriber to free the reader's slot; called once.
    private let onTermination: @Sendable (SubscriptionSink) -> Void

    private struct State {
        /// Buffered events; those before `head` were already taken by `next()`.
        var buffer: [RedisSubscriptionEvent] = []
        var head = 0
        var waiter: Waiter?
        var end: End?
        /// `wake()` was called since `nextBatch` last returned.
        var woken = false

        enum Waiter {
            /// `next()`: handed the event itself.
            case one(CheckedContinuation<RedisSubscriptionEvent?, any Error>)
            /// `nextBatch`: resumed, then takes what is buffered. Unsafe (no checking
            /// object allocated per wait, on the per-chunk path): it is only ever taken
            /// out of `waiter` under the lock, so it is resumed exactly once.
            case batch(UnsafeContinuation<Void, Never>)
        }

        var count: Int { buffer.count - head }

        enum Taken { case event(RedisSubscriptionEvent), ended(RedisError?), empty }

        mutating func take() -> Taken {
            if head < buffer.count {
                let event = buffer[head]
                head += 1
                if head == buffer.count {
                    buffer.removeAll(keepingCapacity: true)
                    head = 0
                }
                return .event(event)
            }
            return takeEnd()
        }

        enum Batch { case events, ended(RedisError?), empty }

        /// Moves everything buffered into `events` (empty on entry).
        mutating func takeAll(into events: inout [RedisSubscriptionEvent]) -> Batch {
            if head < buffer.count {
                if head == 0 {
                    swap(&events, &buffer)
                } else {
                    events.append(contentsOf: buffer[head...])
                    buffer.removeAll(keepingCapacity: true)
                    head = 0
                }
                woken = false
                return .events
            }
            if woken {
                woken = false
                return .events
            }
            switch takeEnd() {
            case .ended(let error): return .ended(error)
            default: return .empty
            }
        }

        private mutating func takeEnd() -> Taken {
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
        enum Action { case none, resumeOne(CheckedContinuation<RedisSubscriptionEvent?, any Error>), resumeBatch(UnsafeContinuation<Void, Never>), overflow }
        let action = state.withLock { state -> Action in
            if state.end != nil { return .none }
            if case .one(let waiter) = state.waiter {
                state.waiter = nil
                return .resumeOne(waiter)
            }
            if let maxBuffered, state.count >= maxBuffered { return .overflow }
            state.buffer.append(event)
            if case .batch(let waiter) = state.waiter {
                state.waiter = nil
                return .resumeBatch(waiter)
            }
            return .none
        }
        switch action {
        case .none:
            break
        case .resumeOne(let waiter):
            waiter.resume(returning: event)
        case .resumeBatch(let waiter):
            waiter.resume()
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
                        state.waiter = .one(continuation)
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

    func nextBatch(into events: inout [RedisSubscriptionEvent]) async throws -> Bool {
        events.removeAll(keepingCapacity: true)
        if Task.isCancelled {
            cancel()
            return false
        }
        while true {
            switch state.withLock({ $0.takeAll(into: &events) }) {
            case .events: return true
            case .ended(let error?): throw error
            case .ended(nil): return false
            case .empty: break
            }
            await withTaskCancellationHandler {
                await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                    let ready = state.withLock { state -> Bool in
                        if state.count > 0 || state.woken || state.end != nil { return true }
                        precondition(state.waiter == nil, "a RedisSubscription supports one consumer at a time")
                        state.waiter = .batch(continuation)
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                cancel()
            }
        }
    }

    func wake() {
        let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            guard state.end == nil else { return nil }
            state.woken = true
            if case .batch(let waiter) = state.waiter {
                state.waiter = nil
                return waiter
            }
            return nil
        }
        waiter?.resume()
    }

    func cancel() {
        finish(.cancelled)
    }

    /// Ends the sequence. `.finished` keeps what is buffered for the reader; the others
    /// discard it. The first call tells the subscriber to free the slot.
    func finish(_ end: End) {
        let (waiter, first) = state.withLock { state -> (State.Waiter?, Bool) in
            guard state.end == nil else { return (nil, false) }
            state.end = end
            if case .finished = end {} else {
                state.buffer.removeAll()
                state.head = 0
            }
            let waiter = state.waiter
            state.waiter = nil
            if case .one = waiter, case .failed = end {
                state.end = .finished  // the waiter reports the error
            }
            return (waiter, true)
        }
        switch waiter {
        case .one(let waiter):
            if case .failed(let error) = end {
                waiter.resume(throwing: error)
            } else {
                waiter.resume(returning: nil)
            }
        case .batch(let waiter):
            waiter.resume()  // it takes the end (and an error) from the state
        case nil:
            break
        }
        if first {
            onTermination(self)
        }
    }
}
