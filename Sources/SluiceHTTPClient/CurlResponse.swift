/// Where a body consumed in place goes: called on the curl thread for every chunk, one
/// call at a time. `Sendable` because it is handed to that thread; its state is touched
/// by that thread only until the consuming call returns (which orders those touches
/// before whatever the awaiting task does next).
public protocol HTTPBodyConsumer: AnyObject, Sendable {
    /// One chunk exactly as libcurl received it; the bytes are valid only during the call.
    func receive(_ bytes: UnsafeRawBufferPointer) -> BodyDisposition
}

/// What a body consumer answers for a chunk.
public enum BodyDisposition: Sendable {
    /// Consumed; carry on.
    case proceed
    /// Consumed; deliver nothing more until the awaiting task's `whenPaused` returns.
    case pause
    /// Consumed; abort the transfer (the consuming call throws).
    case stop
}

/// A response whose status line and headers are in; the body streams behind it.
public struct CurlResponse: Sendable {
    public let status: Int
    public let headers: HTTPHeaders
    /// The body, chunk by chunk. Read it, or drop it to abort the transfer.
    public let body: HTTPResponseBody

    /// The first value of the header `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        self.headers[name]
    }
}

/// A response body as a single-pass sequence of byte chunks, each exactly as libcurl
/// received it. The sequence finishes when the transfer completes and throws
/// ``HTTPClientError`` when it fails.
///
/// Cancelling the task that iterates it, or dropping the last copy of the body and of
/// its iterators before the end, aborts the transfer and closes its connection. Up to
/// 256 KiB are buffered ahead of the reader; past that the transfer is paused until the
/// reader catches up. Iterate it from one task at a time.
public struct HTTPResponseBody: AsyncSequence, Sendable {
    public typealias Element = [UInt8]

    let reader: BodyReader

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(reader: self.reader)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let reader: BodyReader

        public mutating func next() async throws -> [UInt8]? {
            try await self.reader.next()
        }
    }

    /// Aborts the transfer from any task or thread; a reader waiting for the next chunk
    /// gets `error`. For watchdogs such as a first-token timeout, which must stop a
    /// transfer that another task is reading.
    public func abort(with error: HTTPClientError = HTTPClientError(.cancelled, "request aborted")) {
        self.reader.abort(error)
    }

    /// Consumes the body where it arrives: `consumer` gets each chunk exactly as libcurl
    /// received it, on the curl thread, one call at a time, with no task woken per chunk.
    /// Returns when the transfer completes and throws its ``HTTPClientError`` when it
    /// fails (after every chunk received before the failure was consumed).
    ///
    /// When the consumer answers `.pause`, the transfer receives nothing more (libcurl
    /// stops reading its socket) until `whenPaused`, run on the calling task, returns.
    /// Cancelling the calling task aborts the transfer; the consumer is not called once
    /// the cancel (or ``abort(with:)``) has returned. Consume a body once, instead of
    /// iterating it.
    public func consume(_ consumer: some HTTPBodyConsumer, whenPaused: () async -> Void) async throws {
        try await self.reader.consume(consumer, whenPaused: whenPaused)
    }

    /// The whole body in one array.
    /// - Throws: ``HTTPClientError`` with code `.bodyTooLarge` (after aborting the
    ///   transfer) once more than `maxBytes` have arrived, or the transfer's error.
    public func collect(upTo maxBytes: Int = .max) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await chunk in self {
            guard chunk.count <= maxBytes - bytes.count else {
                self.reader.cancel()
                throw HTTPClientError(.bodyTooLarge, "response body larger than \(maxBytes) bytes")
            }
            if bytes.isEmpty { bytes = chunk } else { bytes += chunk }
        }
        return bytes
    }

    /// The whole body decoded as UTF-8 (invalid sequences replaced).
    public func collectString(upTo maxBytes: Int = .max) async throws -> String {
        String(decoding: try await self.collect(upTo: maxBytes), as: UTF8.self)
    }
}

/// The reader's handle on a transfer; its `deinit` (the body and all its iterators are
/// gone) aborts a transfer that is still running. It keeps the client alive: a client
/// dropped while one of its bodies is still being read shuts down only after it.
final class BodyReader: Sendable {
    private let state: TransferState
    private let client: CurlClient
    private var loop: CurlEventLoop { self.client.loop }

    init(state: TransferState, client: CurlClient) {
        self.state = state
        self.client = client
    }

    deinit {
        self.cancel()
    }

    func cancel() {
        if self.state.cancel() { self.loop.abort(self.state) }
    }

    func abort(_ error: HTTPClientError) {
        if self.state.cancel(error) { self.loop.abort(self.state) }
    }

    func consume(_ consumer: some HTTPBodyConsumer, whenPaused: () async -> Void) async throws {
        var attached = false
        while true {
            let paused = try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (waiter: TransferState.ConsumerWaiter) in
                    if let now = self.state.awaitConsumer(waiter) {
                        waiter.resume(with: now)
                    }
                    if !attached {
                        attached = true
                        if !self.loop.attach(consumer, to: self.state) {
                            self.state.cancel(HTTPClientError(.shutdown, "HTTP client shut down"))
                        }
                    }
                }
            } onCancel: {
                self.cancel()
            }
            guard paused else { return }
            await whenPaused()
            self.loop.release(self.state)
        }
    }

    func next() async throws -> [UInt8]? {
        switch self.state.read() {
        case .chunk(let chunk, let resumeTransfer):
            if resumeTransfer { self.loop.resume(self.state) }
            return chunk
        case .end:
            return nil
        case .failed(let error):
            throw error
        case .wait:
            break
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8]?, any Error>) in
                switch self.state.read(orResume: continuation) {
                case .chunk(let chunk, let resumeTransfer):
                    if resumeTransfer { self.loop.resume(self.state) }
                    continuation.resume(returning: chunk)
                case .end:
                    continuation.resume(returning: nil)
                case .failed(let error):
                    continuation.resume(throwing: error)
                case .wait:
                    break  // the curl thread resumes it
                }
            }
        } onCancel: {
            self.cancel()
        }
    }
}
