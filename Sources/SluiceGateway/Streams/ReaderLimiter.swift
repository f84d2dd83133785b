import Synchronization

/// Counts the event streams (`GET /v1/jobs/{id}/events`) each tenant holds open on this
/// gateway process, up to `gateway.max_readers_per_tenant`.
final class ReaderLimiter: Sendable {
    let limit: Int
    private let open = Mutex<[String: Int]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    /// A slot for one more reader of `tenant`, or nil when it holds `limit` already.
    /// The slot is given back by `release()` or, at the latest, when it is dropped.
    func acquire(_ tenant: String) -> ReaderSlot? {
        let admitted = open.withLock { open in
            let count = open[tenant, default: 0]
            guard count < limit else { return false }
            open[tenant] = count + 1
            return true
        }
        return admitted ? ReaderSlot(tenant: tenant, limiter: self) : nil
    }

    /// Streams open now for `tenant`.
    func count(_ tenant: String) -> Int {
        open.withLock { $0[tenant, default: 0] }
    }

    fileprivate func release(_ tenant: String) {
        open.withLock { open in
            let count = open[tenant, default: 0] - 1
            open[tenant] = count > 0 ? count : nil
        }
    }
}

/// One reader's place in its tenant's count. Released once, explicitly or on deinit, so
/// a response whose body never ran frees it too.
final class ReaderSlot: Sendable {
    let tenant: String
    private let limiter: ReaderLimiter
    private let released = Atomic<Bool>(false)

    fileprivate init(tenant: String, limiter: ReaderLimiter) {
        self.tenant = tenant
        self.limiter = limiter
    }

    func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        limiter.release(tenant)
    }

    deinit {
        release()
    }
}
