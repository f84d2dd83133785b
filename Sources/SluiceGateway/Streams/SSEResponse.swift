import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle
import SluiceRedis

/// How an event stream ended.
enum SSEStreamEnd: Sendable {
    /// The job's stream is complete (`chat_finished` was relayed).
    case finished
    /// The client went away (closed its side, or a write to it failed).
    case disconnected
    /// The gateway is shutting down.
    case shutdown
    /// The client read slower than the job wrote and was cut (its buffer is freed).
    case cutOff
    /// The feed failed, or the relay threw.
    case failed(any Error)
}

/// What an event stream writes: its frames, and its last words.
protocol SSERelay: Sendable {
    /// Appends `item`'s frame to `pending`; throwing ends the stream as `.failed`.
    mutating func frame(_ item: JobEventFollower.Item, into pending: inout ByteBuffer) throws
    /// Appends what goes out last to `pending` (nothing when the client is gone), and
    /// does what the end asks for.
    mutating func close(_ end: SSEStreamEnd, into pending: inout ByteBuffer) async
}

extension Gateway {
    /// The gateway's one `text/event-stream` body: counts the reader in the metrics,
    /// follows `feed` after `afterSeq` while the client is there, sends the frames of
    /// events that arrive together in one write, and ends when the gateway shuts down
    /// rather than hold its shutdown for as long as a job runs. The feed is freed
    /// whatever the end.
    ///
    /// The follow runs on `eventLoop`, the loop of the client's connection: a message
    /// from the subscriber's thread wakes that loop once, and the body write goes into
    /// the channel there, with no hop through a thread of Swift's pool.
    ///
    /// - Parameter first: frames that go out before any followed event (what a streamed
    ///   completion gathered before it chose its status).
    /// - Parameter ended: the stream already ended before its body began: `first` goes
    ///   out, then the relay's last words, and nothing is followed.
    func sseResponse<Relay: SSERelay>(
        _ relay: Relay, feed: JobEventFeed, afterSeq: Int, request: Request, eventLoop: any EventLoop,
        headers extra: HTTPFields = [:], first: ByteBuffer = ByteBuffer(), ended: SSEStreamEnd? = nil
    ) -> Response {
        var headers = SSEFormat.headers
        headers[.connection] = "close"
        headers.append(contentsOf: extra)
        let gateway = self
        let loop = EventLoopTaskExecutor(eventLoop)
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            gateway.metrics.sseReaderConnected()
            defer { gateway.metrics.sseReaderDisconnected() }
            var relay = relay
            var pending = first
            if let ended {
                feed.cancel()
                await relay.close(ended, into: &pending)
                if pending.readableBytes > 0 { try? await writer.write(pending) }
                try? await writer.finish(nil)
                return
            }
            // Writes what is pending; a write that fails means the client is gone.
            func writePending() async throws {
                guard pending.readableBytes > 0 else { return }
                do {
                    try await writer.write(pending)
                } catch {
                    throw ClientGone()
                }
                pending.clear()
            }
            let end: SSEStreamEnd
            do {
                let followed = try await withTaskExecutorPreference(loop) {
                    // What the opening gathered goes out now, not with the next event: the
                    // follow writes only what it emits, and the next event may be seconds away.
                    try await writePending()
                    return try await request.watchingDisconnect { disconnect in
                        try await withGracefulShutdownHandler {
                            try await feed.follow(afterSeq: afterSeq, disconnect: disconnect) { item in
                                try relay.frame(item, into: &pending)
                            } flush: {
                                try await writePending()
                            }
                        } onGracefulShutdown: {
                            disconnect.fire()
                        }
                    }
                }
                if followed == .finished {
                    end = .finished
                } else {
                    end = Task.isShuttingDownGracefully ? .shutdown : .disconnected
                }
            } catch is ClientGone {
                end = .disconnected
            } catch let error as RedisError where error.code == .subscriptionOverflow {
                gateway.metrics.sseReaderCut()
                end = .cutOff
            } catch {
                end = .failed(error)
            }
            feed.cancel()
            await relay.close(end, into: &pending)
            if case .disconnected = end { return }
            if pending.readableBytes > 0 { try? await writer.write(pending) }
            try? await writer.finish(nil)
        })
    }
}
