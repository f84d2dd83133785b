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

/// Which offsets may be committed while jobs finish out of order.
///
/// A partition's committed offset may only move past a message once every message
/// before it is done too; otherwise a crash would skip a job still running. Per
/// partition, the messages taken are kept in offset order with a done flag; the
/// committable offset is the offset after the longest done prefix (Kafka commits the
/// next offset to read). Pure logic, no I/O: the worker owns one behind a lock.
public struct OffsetTracker: Sendable {
    private struct Entry: Sendable {
        var offset: Int64
        var done: Bool
    }

    private struct Partition: Sendable {
        var pending: Deque<Entry> = []
        /// The offset to commit next (one past the last contiguous done message).
        var committable: Int64?
        var committed: Int64?

        mutating func begin(_ offset: Int64) {
            if let last = pending.last, offset <= last.offset {
                pending.removeAll()
            } else if pending.isEmpty, let c = committable, offset < c {
                committable = nil
            }
            pending.append(Entry(offset: offset, done: false))
        }

        mutating func markCommitted(_ offset: Int64) {
            if committed.map({ offset > $0 }) ?? true { committed = offset }
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
            guard let index = found else { return false }
            pending[index].done = true
            var moved = false
            while let head = pending.first, head.done {
                committable = head.offset + 1
                pending.removeFirst()
                moved = true
            }
            return moved
        }
    }

    private var partitions: [TopicPartition: Partition] = [:]

    public init() {}

    /// Number of messages taken but not yet done, across partitions.
    public var inFlight: Int { partitions.values.reduce(0) { $0 + $1.pending.lazy.filter { !$0.done }.count } }

    /// Registers a message as taken. Offsets rise within a partition; a lower or equal one
    /// means the consumer was rewound (a rebalance or seek), and the partition starts over.
    public mutating func begin(_ tp: TopicPartition, offset: Int64) {
        // Mutated in place through the dictionary: a copy taken out and stored back would
        // share the deque's storage, and every append would copy all of it (O(in flight)
        // per message, a third of the worker's CPU with 12,000 jobs in flight).
        partitions[tp, default: Partition()].begin(offset)
    }

    /// Marks a message done. Returns true if the partition's committable offset moved.
    @discardableResult
    public mutating func complete(_ tp: TopicPartition, offset: Int64) -> Bool {
        guard partitions[tp] != nil else { return false }
        return partitions[tp]!.complete(offset)
    }

    /// Offsets that can be committed and have not been yet.
    public func commitsDue() -> [(TopicPartition, Int64)] {
        partitions.compactMap { tp, p in
            guard let c = p.committable, c != p.committed else { return nil }
            return (tp, c)
        }
    }

    public mutating func markCommitted(_ tp: TopicPartition, offset: Int64) {
        guard partitions[tp] != nil else { return }
        partitions[tp]!.markCommitted(offset)
    }

    /// Forgets partitions the consumer lost; returns what was committable for them, to
    /// be committed before letting them go.
    public mutating func revoke(_ tps: [TopicPartition]) -> [(TopicPartition, Int64)] {
        var due: [(TopicPartition, Int64)] = []
        for tp in tps {
            if let p = partitions.removeValue(forKey: tp), let c = p.committable, c != p.committed {
                due.append((tp, c))
            }
        }
        return due
    }

    /// Forgets everything (all partitions lost).
    public mutating func revokeAll() -> [(TopicPartition, Int64)] {
        revoke(Array(partitions.keys))
    }

    public func committable(_ tp: TopicPartition) -> Int64? { partitions[tp]?.committable }
}
