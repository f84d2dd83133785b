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
        let (wasRunning, head, reader) = self.state.withLock { state in
            guard state.end == nil else {
                return (false, CheckedContinuation<ResponseHead, any Error>?.none, CheckedContinuation<[UInt8]?, any Error>?.none)
            }
            state.end = .some(error)
            state.chunks = []
            state.firstChunk = 0
            state.bufferedBytes = 0
            return (true, state.takeHeadContinuation(), state.takeReader())
        }
        head?.resume(throwing: error)
        reader?.resume(throwing: error)
        return wasRunning
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
            case abort, buffered, pause
            case handOff(CheckedContinuation<[UInt8]?, any Error>)
        }
        // Copy before locking: libcurl reuses its buffer, and the reader should not wait
        // for a memcpy.
        let chunk = [UInt8](bytes)
        let action = self.state.withLock { state -> Action in
            if state.end != nil { return .abort }
            if let reader = state.takeReader() { return .handOff(reader) }
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
        case .buffered: return .accepted
        case .handOff(let reader):
            reader.resume(returning: chunk)
            return .accepted
        }
    }

    /// The transfer is over: `nil` for success. A no-op if it already ended.
    func finish(_ error: HTTPClientError?) {
        let (head, reader) = self.state.withLock { state in
            guard state.end == nil else {
                return (CheckedContinuation<ResponseHead, any Error>?.none, CheckedContinuation<[UInt8]?, any Error>?.none)
            }
            state.end = .some(error)
            // A reader only waits when the buffer is empty.
            return (state.takeHeadContinuation(), state.takeReader())
        }
        if let head {
            head.resume(throwing: error ?? HTTPClientError(.transfer, "transfer ended before the response head"))
        }
        if let reader {
            if let error { reader.resume(throwing: error) } else { reader.resume(returning: nil) }
        }
    }
}
