import Logging

/// An HTTP/1.1 and HTTP/2 client over libcurl, built for many concurrent long streams.
///
/// One libcurl multi handle, driven by one dedicated thread (never the cooperative
/// pool), runs every transfer; connections (and so their TLS sessions) are reused across
/// requests through the multi handle's connection cache.
/// Over https the client offers HTTP/2, and requests to one host then share a connection
/// as concurrent streams; a request that starts while the host's first connection is
/// still being set up waits for it rather than opening another. `execute` returns as soon as the status line and headers
/// are in, and the body then streams chunk by chunk:
///
/// ```swift
/// let client = CurlClient(logger: logger)
/// defer { client.shutdown() }
/// let response = try await client.execute(CurlRequest(url: "http://127.0.0.1:8000/v1/chat/completions", body: json))
/// for try await chunk in response.body { ... }
/// ```
///
/// Cancelling the task that awaits `execute` or iterates the body, or dropping the body
/// before its end, removes the transfer from libcurl at once, which closes its connection
/// (HTTP/1.1) or resets its stream (HTTP/2), so the server sees the client go away.
public final class CurlClient: Sendable {
    let loop: CurlEventLoop

    /// - Parameter maxConnections: connections kept open, in use or idle, across all
    ///   hosts. Give it at least the number of requests that run at once: beyond it,
    ///   libcurl closes an idle connection every time a transfer ends, after scanning
    ///   every open connection for the oldest.
    public init(logger: Logger = Logger(label: "sluice.http-client"), maxConnections: Int = 1024) {
        self.loop = CurlEventLoop(logger: logger, maxConnections: maxConnections)
    }

    deinit {
        self.loop.shutdown()
    }

    /// Sends `request` and returns once the response's status line and headers are in.
    ///
    /// Any status is a response, 4xx and 5xx included; only failures to exchange HTTP
    /// messages throw.
    /// - Throws: ``HTTPClientError``: `.invalidRequest` for a request that cannot be sent,
    ///   `.connect`, `.idleTimeout`, `.totalTimeout`, `.transfer`, `.cancelled` when the
    ///   calling task is cancelled, `.shutdown` after ``shutdown()``.
    public func execute(_ request: CurlRequest) async throws -> CurlResponse {
        let state = TransferState()
        let transfer = try CurlTransfer(request: request, state: state)
        let head = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ResponseHead, any Error>) in
                // Install the continuation first so that a head can never arrive unawaited;
                // false means the task was cancelled already and it has been resumed.
                guard state.awaitHead(continuation) else { return }
                if !self.loop.submit(transfer) {
                    state.finish(HTTPClientError(.shutdown, "HTTP client shut down"))
                }
            }
        } onCancel: {
            // If the loop has not added the transfer yet it will see it finished and skip it.
            if state.cancel() { self.loop.abort(state) }
        }
        return CurlResponse(
            status: head.status,
            headers: head.headers,
            body: HTTPResponseBody(reader: BodyReader(state: state, client: self))
        )
    }

    /// Runs `hook` on the curl thread after each round of libcurl callbacks, that is after
    /// the body consumers (``HTTPResponseBody/consume(_:whenPaused:)``) have been handed
    /// what one wake-up of the thread received, across all transfers, and before any
    /// transfer that ended in the round is reported to its task. Where a consumer that
    /// queues work for another thread wakes it once for the round rather than per
    /// chunk. Keep it short: it delays every transfer. The hook answers how soon it
    /// wants to run again even if nothing arrives (nil: at the next round, whenever that
    /// is): where it defers work it must not forget.
    public func afterEachRound(_ hook: @escaping @Sendable () -> Duration?) {
        self.loop.afterEachRound(hook)
    }

    /// Aborts every transfer in flight (they fail with `.shutdown`), stops the curl thread
    /// and frees libcurl's handles. Later requests fail with `.shutdown`. Idempotent; blocks
    /// briefly while the thread exits. Also done when the client is deinitialized, which
    /// happens only once no response body of it is left.
    public func shutdown() {
        self.loop.shutdown()
    }
}
