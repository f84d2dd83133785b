import SluiceKafka
import Testing

@Suite struct OffsetTrackerTests {
    let tp = TopicPartition(topic: "t", partition: 0)

    @Test func commitsOnlyTheDonePrefix() {
        var t = OffsetTracker()
        for o in 10...14 { t.begin(tp, offset: Int64(o)) }
        let notMoved = t.complete(tp, offset: 12)
        #expect(notMoved == false)
        #expect(t.committable(tp) == nil)
        let moved10 = t.complete(tp, offset: 10)
        #expect(moved10)
        #expect(t.committable(tp) == 11)
        let moved11 = t.complete(tp, offset: 11)
        #expect(moved11)
        // 10, 11, 12 done: commit the next to read, 13.
        #expect(t.committable(tp) == 13)
        t.complete(tp, offset: 14)
        #expect(t.committable(tp) == 13)
        t.complete(tp, offset: 13)
        #expect(t.committable(tp) == 15)
        #expect(t.inFlight == 0)
    }

    @Test func reverseCompletionOrder() {
        var t = OffsetTracker()
        for o in 0..<100 { t.begin(tp, offset: Int64(o)) }
        for o in (1..<100).reversed() { t.complete(tp, offset: Int64(o)) }
        #expect(t.committable(tp) == nil)
        t.complete(tp, offset: 0)
        #expect(t.committable(tp) == 100)
    }

    @Test func gapsInOffsetsAreFine() {
        var t = OffsetTracker()
        for o in [5, 9, 20] { t.begin(tp, offset: Int64(o)) }
        t.complete(tp, offset: 9)
        t.complete(tp, offset: 5)
        #expect(t.committable(tp) == 10)
    }

    @Test func partitionsAreIndependent() {
        var t = OffsetTracker()
        let other = TopicPartition(topic: "t", partition: 1)
        t.begin(tp, offset: 0)
        t.begin(other, offset: 0)
        t.complete(other, offset: 0)
        #expect(t.committable(tp) == nil)
        #expect(t.committable(other) == 1)
    }

    @Test func commitsDueAreReportedOnce() {
        var t = OffsetTracker()
        t.begin(tp, offset: 0)
        t.complete(tp, offset: 0)
        let due = t.commitsDue()
        #expect(due.count == 1 && due[0].1 == 1)
        t.markCommitted(tp, offset: 1)
        #expect(t.commitsDue().isEmpty)
    }

    @Test func revokeReturnsWhatIsDueAndForgets() {
        var t = OffsetTracker()
        t.begin(tp, offset: 0)
        t.begin(tp, offset: 1)
        t.complete(tp, offset: 0)
        let due = t.revoke([tp])
        #expect(due.map(\.1) == [1])
        // A completion after revoke is ignored.
        let notMoved = t.complete(tp, offset: 1)
        #expect(notMoved == false)
        #expect(t.commitsDue().isEmpty)
    }

    @Test func rewindStartsThePartitionOver() {
        var t = OffsetTracker()
        t.begin(tp, offset: 5)
        t.begin(tp, offset: 6)
        t.begin(tp, offset: 5)  // redelivered after a rebalance
        t.complete(tp, offset: 5)
        #expect(t.committable(tp) == 6)
    }
}
