import Synchronization

/// The status line and headers of a response.
struct ResponseHead: Sendable {
    var status: Int
    var headers: HTTPHeaders
}

/// What one transfer shares between the curl thread, which produces the head and the
/// body chunks, and the task that awaits `execute` and then iterates the body.
///
/// A state machine behind a lock: every method decides under the lock and resumes
/// continuations after releasing it. The body buffer is bounded: past
/// ``highWaterMark`` the curl thread pauses the transfer (libcurl keeps the refused
/// chunk and delivers it again), and the reader asks for it to resume once it has
/// drained the buffer below ``lowWaterMark``.
///
/// A body can instead be consumed where it arrives (``HTTPResponseBody/consume(_:whenPaused:)``):
/// once the curl thread has attached the consumer, each write callback hands its bytes to
/// it, under the lock, so that no call of the consumer runs after the transfer was
/// cancelled; the awaiting task only hears of pauses the consumer asks for and of the end.
final class TransferState: Sendable {
    /// Buffered body bytes at which the transfer is paused.
    static let highWaterMark = 256 * 1024
    /// Buffered body bytes below which a paused transfer is resumed.
    static let lowWaterMark = 64 * 1024
    /// Charged per buffered chunk on top of its bytes, so that many tiny chunks are
    /// bounded too.
    private static let chunkOverhead = 64

    /// What the curl write callback should answer.
    enum WriteDecision {
        case accepted
        /// Buffer full: answer `CURL_WRITEFUNC_PAUSE`; libcurl delivers the chunk again
        /// after `curl_easy_pause(CURLPAUSE_CONT)`.
        case pause
        /// The reader is gone: answer 0 so that libcurl aborts at once.
        case abort
    }

    /// What the task consuming the body in place hears: the consumer asked for a pause
    /// (`true`) or the transfer ended (`false`; a failure throws).
    typealias ConsumerWaiter = CheckedContinuation<Bool, any Error>

    /// What the reader gets from one `next()`.
    enum ReadResult {
        case chunk([UInt8], resumeTransfer: Bool)
        case end
        case failed(HTTPClientError)
        case wait
    }

    private struct State {
        enum Head {
            case pending
            case awaited(CheckedContinuation<ResponseHead, any Error>)
            case delivered
        }

        var head: Head = .pending
        var chunks: [[UInt8]] = []
        var firstChunk = 0
        var bufferedBytes = 0
        var paused = false
        var reader: CheckedContinuation<[UInt8]?, any Error>?
        /// Set once the transfer is over; `nil` error means success. Buffered chunks are
        /// still delivered before a failure (but not before a cancellation, which drops
        /// them).
        var end: HTTPClientError?? = nil

        // Consuming in place: set by the curl thread when it attaches the consumer.
        var consumer: (any HTTPBodyConsumer)?
        /// The consumer asked for a pause: the transfer delivers nothing more until the
        /// awaiting task has it resumed.
        var held = false
        /// A pause the awaiting task has not heard of yet.
        var pauseUnheard = false
        var waiter: ConsumerWaiter?

        /// Feeds buffered chunks (those that came before the consumer was attached) to the
        /// consumer until one asks for a pause; then, with none left, tells the waiter of
        /// the end. Curl thread, under the lock.
        mutating func drainIntoConsumer() -> (ConsumerWaiter, Result<Bool, HTTPClientError>)? {
            guard let consumer else { return nil }
            while !self.held, self.firstChunk < self.chunks.count {
                let chunk = self.chunks[self.firstChunk]
                guard case .chunk = self.popChunk() else { break }
                switch chunk.withUnsafeBytes({ consumer.receive($0) }) {
                case .proceed: continue
                case .pause: return self.holdForConsumer()
                case .stop: return self.stopForConsumer()
                }
            }
            guard !self.held, self.firstChunk == self.chunks.count, case .some(let end) = self.end, let waiter = self.takeWaiter() else {
                return nil
            }
            return (waiter, end.map { .failure($0) } ?? .success(false))
        }

        mutating func holdForConsumer() -> (ConsumerWaiter, Result<Bool, HTTPClientError>)? {
            self.held = true
            guard let waiter = self.takeWaiter() else {
                self.pauseUnheard = true
                return nil
            }
            return (waiter, .success(true))
        }

        mutating func stopForConsumer() -> (ConsumerWaiter, Result<Bool, HTTPClientError>)? {
            let error = HTTPClientError(.transfer, "the response body's consumer stopped the transfer")
            self.end = .some(error)
            self.chunks = []
            self.firstChunk = 0
            self.bufferedBytes = 0
            return self.takeWaiter().map { ($0, .failure(error)) }
        }

        mutating func takeWaiter() -> ConsumerWaiter? {
            defer { self.waiter = nil }
            return self.waiter
        }

        mutating func popChunk() -> ReadResult? {
            guard self.firstChunk < self.chunks.count else { return nil }
            let chunk = self.chunks[self.firstChunk]
            self.chunks[self.firstChunk] = []
            self.firstChunk += 1
            if self.firstChunk == self.chunks.count {
                self.chunks.removeAll(keepingCapacity: true)
                self.firstChunk = 0
            } else if self.firstChunk >= 1024, self.firstChunk * 2 >= self.chunks.count {
                self.chunks.removeFirst(self.firstChunk)
                self.firstChunk = 0
            }
            self.bufferedBytes -= chunk.count + TransferState.chunkOverhead
            var resume = false
            if self.paused, self.bufferedBytes <= TransferState.lowWaterMark {
                self.paused = false
                resume = true
            }
            return .chunk(chunk, resumeTransfer: resume)
        }

        mutating func takeHeadContinuation() -> CheckedContinuation<ResponseHead, any Error>? {
            guard case .awaited(let continuation) = self.head else { return nil }
            self.head = .delivered
            return continuation
        }

        mutating func takeReader() -> CheckedContinuation<[UInt8]?, any Error>? {
            defer { self.reader = nil }
            return self.reader
        }
    }

    private let state = Mutex(State())

    /// Whether the transfer has ended (completed, failed or cancelled).
    var isFinished: Bool {
        self.state.withLock { $0.end != nil }
    }

    // MARK: Reader side

    /// Installs the continuation that `execute` awaits. Returns false, having resumed it
    /// with the error, when the transfer has already ended (cancelled before it started).
    func awaitHead(_ continuation: CheckedContinuation<ResponseHead, any Error>) -> Bool {
        let error: HTTPClientError? = self.state.withLock { state in
            if case .some(let end) = state.end {
                return end ?? HTTPClientError(.transfer, "transfer ended before the response head")
            }
            guard case .pending = state.head else { preconditionFailure("response head awaited twice") }
            state.head = .awaited(continuation)
            return nil
        }
        if let error {
            continuation.resume(throwing: error)
            return false
        }
        return true
    }

    /// The next buffered chunk, the end, or `.wait`.
    func read() -> ReadResult {
        self.state.withLock { state in
            if let chunk = state.popChunk() { return chunk }
            switch state.end {
            case .none: return .wait
            case .some(.none): return .end
            case .some(.some(let error)): return .failed(error)
            }
        }
    }

    /// Like `read()`, but installs `reader` to be resumed by the curl thread instead of
    /// answering `.wait`.
    func read(orResume reader: CheckedContinuation<[UInt8]?, any Error>) -> ReadResult {
        self.state.withLock { state in
            if let chunk = state.popChunk() { return chunk }
            switch state.end {
            case .none:
                precondition(state.reader == nil, "HTTPResponseBody iterated by two tasks at once")
                state.reader = reader
                return .wait
            case .some(.none): return .end
            case .some(.some(let error)): return .failed(error)
            }
        }
    }

    /// Ends the transfer from the reader's side: drops buffered chunks and fails whoever
    /// waits with `.cancelled`. Returns whether the transfer was still running, in which
    /// case the caller must have the curl thread abort it.
    @discardableResult
    func cancel(_ error: HTTPClientError = HTTPClientError(.cancelled, "request cancelled")) -> Bool {
        let (wasRunning, head, reader, waiter) = self.state.withLock { state in
            guard state.end == nil else {
                return (false, CheckedContinuation<ResponseHead, any Error>?.none, CheckedContinuation<[UInt8]?, any Error>?.none,
                        ConsumerWaiter?.none)
            }
            state.end = .some(error)
            state.chunks = []
            state.firstChunk = 0
            state.bufferedBytes = 0
            return (true, state.takeHeadContinuation(), state.takeReader(), state.takeWaiter())
        }
        head?.resume(throwing: error)
        reader?.resume(throwing: error)
        waiter?.resume(throwing: error)
        return wasRunning
    }

    // MARK: Consuming in place

    /// The awaiting task's wait: answers at once with a pause it has not heard of, or
    /// with the end once every chunk has been consumed; otherwise installs `waiter` for
    /// the curl thread to resume. Returns nil in that case.
    func awaitConsumer(_ waiter: ConsumerWaiter) -> Result<Bool, HTTPClientError>? {
        self.state.withLock { state in
            if state.pauseUnheard {
                state.pauseUnheard = false
                return .success(true)
            }
            // Chunks still buffered are the consumer's to see first (a cancel drops them).
            if case .some(let end) = state.end, state.firstChunk == state.chunks.count {
                return end.map { .failure($0) } ?? .success(false)
            }
            precondition(state.waiter == nil, "HTTPResponseBody consumed by two tasks at once")
            state.waiter = waiter
            return nil
        }
    }

    /// Curl thread: from now on the body goes to `consumer`, starting with what is
    /// buffered. Returns whether the transfer may receive (no pause asked for).
    func attach(_ consumer: any HTTPBodyConsumer) -> Bool {
        let (wake, held) = self.state.withLock { state in
            precondition(state.consumer == nil, "HTTPResponseBody consumed twice")
            state.consumer = consumer
            return (state.drainIntoConsumer(), state.held)
        }
        if let (waiter, result) = wake { waiter.resume(with: result) }
        return !held
    }

    /// Curl thread: the awaiting task is done with a pause; what was held back is
    /// delivered. Returns whether the transfer may receive again (always, for a body
    /// read as a sequence).
    func release() -> Bool {
        let (wake, held) = self.state.withLock { state in
            guard state.held else { return ((ConsumerWaiter, Result<Bool, HTTPClientError>)?.none, false) }
            state.held = false
            return (state.drainIntoConsumer(), state.held)
        }
        if let (waiter, result) = wake { waiter.resume(with: result) }
        return !held
    }

    // MARK: curl thread side

    /// The final status line and headers are in.
    func deliverHead(_ head: ResponseHead) {
        let continuation = self.state.withLock { state -> CheckedContinuation<ResponseHead, any Error>? in
            guard state.end == nil else { return nil }
            return state.takeHeadContinuation()
        }
        continuation?.resume(returning: head)
    }

    /// One body chunk exactly as libcurl's write callback handed it over.
    func receive(_ bytes: UnsafeRawBufferPointer) -> WriteDecision {
        enum Action {
            case abort, buffered, pause, consumed
            case handOff(CheckedContinuation<[UInt8]?, any Error>, [UInt8])
            case wake(ConsumerWaiter, Result<Bool, HTTPClientError>, WriteDecision)
        }
        let action = self.state.withLock { state -> Action in
            if state.end != nil { return .abort }
            if let consumer = state.consumer {
                // Held, or still delivering what was buffered: libcurl keeps this chunk.
                if state.held || state.firstChunk < state.chunks.count { return .pause }
                switch consumer.receive(bytes) {
                case .proceed:
                    return .consumed
                case .pause:
                    // This chunk is consumed; the next write callback pauses.
                    return state.holdForConsumer().map { .wake($0, $1, .accepted) } ?? .consumed
                case .stop:
                    return state.stopForConsumer().map { .wake($0, $1, .abort) } ?? .abort
                }
            }
            // libcurl reuses its buffer.
            let chunk = [UInt8](bytes)
            if let reader = state.takeReader() { return .handOff(reader, chunk) }
            if state.bufferedBytes >= TransferState.highWaterMark {
                state.paused = true
                return .pause
            }
            state.chunks.append(chunk)
            state.bufferedBytes += chunk.count + TransferState.chunkOverhead
            return .buffered
        }
        switch action {
        case .abort: return .abort
        case .pause: return .pause
        case .buffered, .consumed: return .accepted
        case .handOff(let reader, let chunk):
            reader.resume(returning: chunk)
            return .accepted
        case .wake(let waiter, let result, let decision):
            waiter.resume(with: result)
            return decision
        }
    }

    /// The transfer is over: `nil` for success. A no-op if it already ended.
    func finish(_ error: HTTPClientError?) {
        let (head, reader, waiter) = self.state.withLock { state in
            guard state.end == nil else {
                return (CheckedContinuation<ResponseHead, any Error>?.none, CheckedContinuation<[UInt8]?, any Error>?.none,
                        ConsumerWaiter?.none)
            }
            state.end = .some(error)
            // A reader only waits when the buffer is empty; a consumer's waiter hears of
            // the end once the buffer is drained into it.
            let waiter = state.firstChunk == state.chunks.count ? state.takeWaiter() : nil
            return (state.takeHeadContinuation(), state.takeReader(), waiter)
        }
        if let waiter {
            if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: false) }
        }
        if let head {
            head.resume(throwing: error ?? HTTPClientError(.transfer, "transfer ended before the response head"))
        }
        if let reader {
            if let error { reader.resume(throwing: error) } else { reader.resume(returning: nil) }
        }
    }
}
