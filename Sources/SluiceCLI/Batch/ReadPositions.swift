import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceKafka
import Synchronization
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

/// The next offset to read per partition of the results consumer: what it commits.
final class ReadPositions: Sendable {
    private let next = Mutex<[TopicPartition: Int64]>([:])

    func read(_ message: KafkaMessage) {
        next.withLock { $0[message.topicPartition] = message.offset + 1 }
    }

    /// The positions of `partitions` (all when nil).
    func due(for partitions: Set<TopicPartition>?) -> [TopicPartitionOffset] {
        next.withLock { n in
            n.compactMap { tp, offset in
                partitions == nil || partitions!.contains(tp) ? TopicPartitionOffset(tp, offset: offset) : nil
            }
        }
    }
}
