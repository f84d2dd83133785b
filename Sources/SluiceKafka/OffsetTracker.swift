import DequeModule

public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// Which offsets may be committed while jobs finish out of order, across rebalances.
///
/// A partition's committed offset may only move past a message once every message
/// before it is done too; otherwise a crash would skip a job still running. Per
/// partition, the messages taken are kept in offset order with a done flag; the
/// committable offset is the offset after the longest done prefix (Kafka commits the
/// next offset to read).
///
/// Ownership has epochs. Every assignment of a partition starts a new epoch, and so does
/// a rewind (a message at or below one already taken: the consumer was sought back).
/// `begin` answers a `Ticket` naming the epoch; a completion whose ticket is of an older
/// epoch is ignored, so a job that started before a revoke or a rewind can never move
/// the commit of the partition's next owner. Messages carry the consumer's assignment
/// generation of their partition: one fetched under an assignment that has since ended
/// (fetched before a revoke, delivered after it) is refused, even when the partition
/// has come back; its current owner reads it again.
///
/// Commits are two-phase: `commitsDue` names what to send and remembers it as in
/// flight; only `commitSucceeded` (from the broker's answer) makes it committed, and
/// `commitFailed` makes it due again. Pure logic, no I/O: the worker owns one behind a
/// lock.
public struct OffsetTracker: Sendable {
    /// What a job holds to complete its message: the partition, the epoch it was taken
    /// in, and its offset.
    public struct Ticket: Sendable, Hashable {
        public var topicPartition: TopicPartition
        public var epoch: UInt64
        public var offset: Int64
    }

    private struct Entry: Sendable {
        var offset: Int64
        var done: Bool
    }

    private struct Partition: Sendable {
        /// The consumer's assignment generation this partition is held under.
        var generation: UInt64
        /// The tracker's epoch: a new one per assignment and per rewind.
        var epoch: UInt64
        var pending: Deque<Entry> = []
        /// The offset to commit next (one past the last contiguous done message).
        var committable: Int64?
        /// The highest offset the broker acknowledged for this partition in this epoch.
        var committed: Int64?
        /// An offset sent and not answered yet.
        var inFlight: Int64?

        init(generation: UInt64, epoch: UInt64) {
            self.generation = generation
            self.epoch = epoch
        }

        mutating func complete(_ offset: Int64) -> Bool {
            guard let first = pending.first, offset >= first.offset else { return false }
            // Offsets are ascending but may have gaps (compaction, transactions): binary search.
            var lo = 0
            var hi = pending.count - 1
            var found: Int?
            while lo <= hi {
                let mid = (lo + hi) / 2
                let o = pending[mid].offset
                if o == offset { found = mid; break }
                if o < offset { lo = mid + 1 } else { hi = mid - 1 }
            }
            guard let index = found, !pending[index].done else { return false }
            pending[index].done = true
            var moved = false
            while let head = pending.first, head.done {
                committable = head.offset + 1
                pending.removeFirst()
                moved = true
            }
            return moved
        }

        /// The committable offset, when it is neither acknowledged nor being sent.
        var due: Int64? {
            guard let c = committable else { return nil }
            if let done = committed, c <= done { return nil }
            if let sending = inFlight, c <= sending { return nil }
            return c
        }
    }

    private var partitions: [TopicPartition: Partition] = [:]
    private var nextEpoch: UInt64 = 1

    public init() {}

    /// Number of messages taken but not yet done, across partitions.
    public var inFlight: Int { partitions.values.reduce(0) { $0 + $1.pending.lazy.filter { !$0.done }.count } }

    /// Partitions currently owned.
    public var assigned: Set<TopicPartition> { Set(partitions.keys) }

    /// The partitions were assigned to this consumer under `generation` (the consumer's
    /// count of assignments): each starts a new epoch with nothing taken. Returns what was
    /// still committable for any of them that was already held (an assignment without a
    /// revoke in between), to be committed first.
    @discardableResult
    public mutating func assign(_ tps: [TopicPartition], generation: UInt64) -> [(TopicPartition, Int64)] {
        var due: [(TopicPartition, Int64)] = []
        for tp in tps {
            if let old = partitions[tp], let c = old.due { due.append((tp, c)) }
            partitions[tp] = Partition(generation: generation, epoch: nextEpoch)
            nextEpoch &+= 1
        }
        return due
    }

    /// Registers a message as taken. Answers nil when the message was fetched under an
    /// assignment that is not the current one: it must not be started (the partition's
    /// current owner reads it again). An offset at or below one already taken means the
    /// consumer was rewound: a new epoch starts, and the jobs of the old one can no
    /// longer move this partition's commit.
    public mutating func begin(_ tp: TopicPartition, generation: UInt64, offset: Int64) -> Ticket? {
        // Mutated in place through the dictionary: a copy taken out and stored back would
        // share the deque's storage, and every append would copy all of it (O(in flight)
        // per message).
        guard partitions[tp]?.generation == generation else { return nil }
        let rewound: Bool = {
            let p = partitions[tp]!
            if let last = p.pending.last { return offset <= last.offset }
            if let c = p.committable { return offset < c }
            return false
        }()
        if rewound {
            partitions[tp] = Partition(generation: generation, epoch: nextEpoch)
            nextEpoch &+= 1
        }
        partitions[tp]!.pending.append(Entry(offset: offset, done: false))
        return Ticket(topicPartition: tp, epoch: partitions[tp]!.epoch, offset: offset)
    }

    /// Marks a message done. Returns true if the partition's committable offset moved.
    /// A ticket of an epoch that has ended changes nothing.
    @discardableResult
    public mutating func complete(_ ticket: Ticket) -> Bool {
        guard partitions[ticket.topicPartition]?.epoch == ticket.epoch else { return false }
        return partitions[ticket.topicPartition]!.complete(ticket.offset)
    }

    /// Whether a ticket's epoch is still the partition's current one.
    public func isCurrent(_ ticket: Ticket) -> Bool {
        partitions[ticket.topicPartition]?.epoch == ticket.epoch
    }

    /// Offsets to commit now: committable, not acknowledged and not already on their way.
    /// Each returned offset is remembered as in flight until `commitSucceeded` or
    /// `commitFailed` answers for it.
    public mutating func commitsDue() -> [(TopicPartition, Int64)] {
        var due: [(TopicPartition, Int64)] = []
        for tp in partitions.keys {
            if let c = partitions[tp]!.due {
                partitions[tp]!.inFlight = c
                due.append((tp, c))
            }
        }
        return due
    }

    /// The broker acknowledged `offset` for the partition.
    public mutating func commitSucceeded(_ tp: TopicPartition, offset: Int64) {
        guard partitions[tp] != nil else { return }
        if partitions[tp]!.committed.map({ offset > $0 }) ?? true { partitions[tp]!.committed = offset }
        if let sending = partitions[tp]!.inFlight, sending <= offset { partitions[tp]!.inFlight = nil }
    }

    /// A commit of `offset` failed: it becomes due again.
    public mutating func commitFailed(_ tp: TopicPartition, offset: Int64) {
        guard partitions[tp] != nil else { return }
        if partitions[tp]!.inFlight == offset { partitions[tp]!.inFlight = nil }
    }

    /// Forgets partitions the consumer lost; returns what was committable and not yet
    /// acknowledged for them, to be committed (synchronously) before letting them go.
    /// Jobs of these partitions still running can no longer commit anything.
    public mutating func revoke(_ tps: [TopicPartition]) -> [(TopicPartition, Int64)] {
        var due: [(TopicPartition, Int64)] = []
        for tp in tps {
            guard let p = partitions.removeValue(forKey: tp), let c = p.committable else { continue }
            if let done = p.committed, c <= done { continue }
            due.append((tp, c))
        }
        return due
    }

    /// Forgets everything (all partitions lost, or the consumer is closing).
    public mutating func revokeAll() -> [(TopicPartition, Int64)] {
        revoke(Array(partitions.keys))
    }

    public func committable(_ tp: TopicPartition) -> Int64? { partitions[tp]?.committable }
    public func committed(_ tp: TopicPartition) -> Int64? { partitions[tp]?.committed }
}
