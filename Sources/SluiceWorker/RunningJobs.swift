import Synchronization

/// The jobs a worker is running, as unstructured tasks it can cancel together.
///
/// Not a task group: the Swift runtime keeps a group's children in a list that it walks
/// to unlink each child that finishes, so every job cost O(jobs in flight) to end (12 %
/// of the worker's CPU with 12,000 jobs in flight). Here a job is a dictionary entry,
/// added and removed in constant time.
final class RunningJobs: Sendable {
    private struct State {
        var nextID = 0
        var tasks: [Int: Task<Void, Never>] = [:]
        /// Jobs that ended before `start` had registered their task.
        var endedEarly: Set<Int> = []
        var cancelled = false
    }

    private let state = Mutex(State())

    /// Runs `job` as a task of its own; cancelled at once if `cancelAll` came first.
    func start(_ job: @escaping @Sendable () async -> Void) {
        let id = state.withLock { s in
            defer { s.nextID += 1 }
            return s.nextID
        }
        let task = Task {
            await job()
            self.state.withLock { s in
                if s.tasks.removeValue(forKey: id) == nil { s.endedEarly.insert(id) }
            }
        }
        let cancel = state.withLock { s -> Bool in
            if s.endedEarly.remove(id) != nil { return false }
            s.tasks[id] = task
            return s.cancelled
        }
        if cancel { task.cancel() }
    }

    /// Cancels every running job, and any started later.
    func cancelAll() {
        let tasks = state.withLock { s in
            s.cancelled = true
            return Array(s.tasks.values)
        }
        for task in tasks { task.cancel() }
    }
}
