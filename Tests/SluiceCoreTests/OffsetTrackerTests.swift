import SluiceKafka
import Testing

@Suite struct OffsetTrackerTests {
    let tp = TopicPartition(topic: "t", partition: 0)

    /// `begin`, required to answer a ticket.
    func taken(_ t: inout OffsetTracker, _ tp: TopicPartition, generation: UInt64, offset: Int64) throws -> OffsetTracker.Ticket {
        let ticket = t.begin(tp, generation: generation, offset: offset)
        return try #require(ticket)
    }

    /// A tracker that owns `tp` (and `others`) under generation 1.
    func tracker(_ others: [TopicPartition] = []) -> OffsetTracker {
        var t = OffsetTracker()
        t.assign([tp] + others, generation: 1)
        return t
    }

    @Test func commitsOnlyTheDonePrefix() throws {
        var t = tracker()
        var tickets: [Int64: OffsetTracker.Ticket] = [:]
        for o in Int64(10)...14 { tickets[o] = try taken(&t, tp, generation: 1, offset: o) }
        do { let moved = t.complete(tickets[12]!); #expect(moved == false) }
        #expect(t.committable(tp) == nil)
        do { let moved = t.complete(tickets[10]!); #expect(moved) }
        #expect(t.committable(tp) == 11)
        do { let moved = t.complete(tickets[11]!); #expect(moved) }
        // 10, 11, 12 done: commit the next to read, 13.
        #expect(t.committable(tp) == 13)
        t.complete(tickets[14]!)
        #expect(t.committable(tp) == 13)
        t.complete(tickets[13]!)
        #expect(t.committable(tp) == 15)
        #expect(t.inFlight == 0)
    }

    @Test func reverseCompletionOrderAndGaps() throws {
        var t = tracker()
        let offsets: [Int64] = [0, 1, 2, 5, 9, 20]
        var tickets: [OffsetTracker.Ticket] = []
        for o in offsets { tickets.append(try taken(&t, tp, generation: 1, offset: o)) }
        for ticket in tickets.dropFirst().reversed() { t.complete(ticket) }
        #expect(t.committable(tp) == nil)
        t.complete(tickets[0])
        #expect(t.committable(tp) == 21)
    }

    @Test func partitionsAreIndependent() throws {
        let other = TopicPartition(topic: "t", partition: 1)
        var t = tracker([other])
        _ = try taken(&t, tp, generation: 1, offset: 0)
        let o = try taken(&t, other, generation: 1, offset: 0)
        t.complete(o)
        #expect(t.committable(tp) == nil)
        #expect(t.committable(other) == 1)
    }

    @Test func aCommitCountsOnlyWhenTheBrokerTakesIt() throws {
        var t = tracker()
        let zero = try taken(&t, tp, generation: 1, offset: 0)
        t.complete(zero)
        let due = t.commitsDue()
        #expect(due.count == 1 && due[0].1 == 1)
        do { let again = t.commitsDue(); #expect(again.isEmpty, "already on its way") }
        #expect(t.committed(tp) == nil, "sent is not committed")
        t.commitFailed(tp, offset: 1)
        do { let again = t.commitsDue(); #expect(again.map(\.1) == [1], "a failed commit is due again") }
        t.commitSucceeded(tp, offset: 1)
        #expect(t.committed(tp) == 1)
        do { let due = t.commitsDue(); #expect(due.isEmpty) }
    }

    @Test func revokeReturnsWhatIsDueAndLaterCompletionsAreIgnored() throws {
        var t = tracker()
        let a = try taken(&t, tp, generation: 1, offset: 0)
        let b = try taken(&t, tp, generation: 1, offset: 1)
        t.complete(a)
        _ = t.commitsDue()  // sent but not acknowledged: revoke must still return it
        do { let due = t.revoke([tp]); #expect(due.map(\.1) == [1]) }
        do { let moved = t.complete(b); #expect(moved == false) }
        do { let due = t.commitsDue(); #expect(due.isEmpty) }
    }

    @Test func aMessageFetchedUnderAnEndedAssignmentIsRefused() throws {
        var t = tracker()
        // Fetched under generation 1, delivered after the partition went and came back.
        t.revoke([tp])
        t.assign([tp], generation: 2)
        let stale = t.begin(tp, generation: 1, offset: 7)
        #expect(stale == nil)
        let unknown = t.begin(TopicPartition(topic: "t", partition: 9), generation: 1, offset: 0)
        #expect(unknown == nil, "never assigned")
        let current = t.begin(tp, generation: 2, offset: 3)
        #expect(current != nil)
    }

    @Test func aJobOfAnOldAssignmentCannotMoveTheNewOwnersCommit() throws {
        var t = tracker()
        let old5 = try taken(&t, tp, generation: 1, offset: 5)
        t.revoke([tp])
        t.assign([tp], generation: 2)
        _ = try taken(&t, tp, generation: 2, offset: 5)
        // The old run of offset 5 finishes: the new run of 5 is still going.
        do { let moved = t.complete(old5); #expect(moved == false) }
        #expect(t.committable(tp) == nil)
    }

    @Test func aRewindStartsANewEpoch() throws {
        var t = tracker()
        let first5 = try taken(&t, tp, generation: 1, offset: 5)
        let first6 = try taken(&t, tp, generation: 1, offset: 6)
        t.complete(first5)
        #expect(t.committable(tp) == 6)
        let again5 = try taken(&t, tp, generation: 1, offset: 5)  // sought back
        #expect(t.committable(tp) == nil, "the old committable is not kept after a rewind")
        #expect(!t.isCurrent(first6))
        t.complete(first6)
        #expect(t.committable(tp) == nil, "a completion of the old epoch moves nothing")
        t.complete(again5)
        #expect(t.committable(tp) == 6)
    }
}

/// The tracker against a reference model, over random sequences of what a consumer meets:
/// assignments, revokes, messages (and rewinds), completions in any order, commits that
/// succeed or fail, and crashes.
///
/// The model is the broker's committed offset and, per message ever taken, whether its
/// result was produced. After every step it checks the safety rule: the committed offset
/// never passes a message of this partition whose job has not produced its result, unless
/// a later run of that message did (a redelivery that finished). And within one epoch
/// the offsets the tracker sends never go backwards.
@Suite struct OffsetTrackerModelTests {
    /// The fuzz tests' SplitMix64: deterministic, so a failure names a seed that
    /// reproduces it.
    typealias SplitMix64 = FuzzTests.Rng

    /// A job in flight on the consumer: its ticket, and the message it runs.
    struct Running {
        var ticket: OffsetTracker.Ticket
        var tp: TopicPartition
        var offset: Int64
    }

    @Test(arguments: 0..<400)
    func theCommittedOffsetNeverPassesAJobWithoutAResult(seed: Int) throws {
        var rng = SplitMix64(state: UInt64(seed) &* 7919 &+ 1)
        let parts = [TopicPartition(topic: "jobs", partition: 0), TopicPartition(topic: "jobs", partition: 1)]
        let logEnd: Int64 = 40

        var tracker = OffsetTracker()
        // The broker's truth.
        var committed: [TopicPartition: Int64] = [:]
        // Messages whose job produced a result, by any run.
        var produced: Set<[Int64]> = []
        func key(_ tp: TopicPartition, _ o: Int64) -> [Int64] { [Int64(tp.partition), o] }

        // The consumer: what it owns, under which generation, where it fetches next.
        var generation: UInt64 = 0
        var owned: [TopicPartition: UInt64] = [:]
        var position: [TopicPartition: Int64] = [:]
        // Messages fetched but not yet handed to the tracker (the worker's buffer).
        var buffered: [(TopicPartition, UInt64, Int64)] = []
        var running: [Running] = []
        // Commits sent and not answered: (tp, offset).
        var inFlightCommits: [(TopicPartition, Int64)] = []
        // Per epoch (ticket epoch), the last offset sent, to check monotonicity.
        var lastSent: [TopicPartition: (epoch: UInt64, offset: Int64)] = [:]
        var currentEpoch: [TopicPartition: UInt64] = [:]

        func assign(_ tps: [TopicPartition]) {
            generation += 1
            let due = tracker.assign(tps, generation: generation)
            brokerCommit(due)
            for tp in tps {
                owned[tp] = generation
                position[tp] = committed[tp] ?? 0
                lastSent[tp] = nil
            }
        }
        func brokerCommit(_ offsets: [(TopicPartition, Int64)]) {
            for (tp, o) in offsets { committed[tp] = o }
        }
        func revoke(_ tps: [TopicPartition]) {
            brokerCommit(tracker.revoke(tps))  // committed synchronously on revoke
            for tp in tps { owned[tp] = nil; position[tp] = nil; lastSent[tp] = nil }
        }
        func checkSafety(_ step: String) {
            for (tp, c) in committed {
                for o in 0..<c where !produced.contains(key(tp, o)) {
                    Issue.record("seed \(seed), after \(step): \(tp) committed at \(c) but offset \(o) has no result")
                    return
                }
            }
        }

        for step in 0..<300 {
            let action = Int.random(in: 0..<100, using: &rng)
            var name = ""
            switch action {
            case 0..<6:  // a rebalance: some partitions go, others come
                name = "rebalance"
                let going = parts.filter { owned[$0] != nil && Bool.random(using: &rng) }
                if !going.isEmpty { revoke(going) }
                let coming = parts.filter { owned[$0] == nil && Bool.random(using: &rng) }
                if !coming.isEmpty { assign(coming) }
            case 6..<30:  // fetch a message of an owned partition
                name = "fetch"
                guard let tp = parts.filter({ owned[$0] != nil }).randomElement(using: &rng),
                      let pos = position[tp], pos < logEnd else { continue }
                buffered.append((tp, owned[tp]!, pos))
                position[tp] = pos + 1
            case 30..<33:  // a seek back (librdkafka resets or rewinds a partition)
                name = "rewind"
                guard let tp = parts.filter({ owned[$0] != nil }).randomElement(using: &rng) else { continue }
                position[tp] = committed[tp] ?? 0
            case 33..<55:  // the worker takes the next buffered message
                name = "begin"
                guard !buffered.isEmpty else { continue }
                let (tp, gen, o) = buffered.removeFirst()
                if let ticket = tracker.begin(tp, generation: gen, offset: o) {
                    #expect(owned[tp] == gen, "seed \(seed): started a message of a partition not owned under its generation")
                    running.append(Running(ticket: ticket, tp: tp, offset: o))
                    currentEpoch[tp] = ticket.epoch
                }
            case 55..<80:  // some job finishes: its result is produced, then it completes
                name = "complete"
                guard !running.isEmpty else { continue }
                let i = Int.random(in: 0..<running.count, using: &rng)
                let job = running.remove(at: i)
                produced.insert(key(job.tp, job.offset))
                tracker.complete(job.ticket)
            case 80..<88:  // the commit loop sends what is due
                name = "commit"
                for (tp, o) in tracker.commitsDue() {
                    if let last = lastSent[tp], last.epoch == currentEpoch[tp] {
                        #expect(o >= last.offset, "seed \(seed): commit went backwards within an epoch")
                    }
                    lastSent[tp] = (currentEpoch[tp] ?? 0, o)
                    inFlightCommits.append((tp, o))
                }
            case 88..<96:  // the broker answers one commit
                name = "commit answer"
                guard !inFlightCommits.isEmpty else { continue }
                let (tp, o) = inFlightCommits.removeFirst()
                if Bool.random(using: &rng) && Int.random(in: 0..<4, using: &rng) > 0 {
                    brokerCommit([(tp, o)])
                    tracker.commitSucceeded(tp, offset: o)
                } else {
                    tracker.commitFailed(tp, offset: o)
                }
            default:  // the worker crashes: everything in memory is gone, jobs never finish
                name = "crash"
                checkSafety("crash")
                tracker = OffsetTracker()
                owned = [:]
                position = [:]
                buffered = []
                running = []
                inFlightCommits = []
                lastSent = [:]
                currentEpoch = [:]
                assign(parts.filter { _ in Bool.random(using: &rng) })
            }
            checkSafety("step \(step) (\(name))")
        }
        // Liveness: with everything finished and committed, the commit reaches what was taken.
        for job in running {
            produced.insert(key(job.tp, job.offset))
            tracker.complete(job.ticket)
        }
        for (tp, o) in tracker.commitsDue() {
            brokerCommit([(tp, o)])
            tracker.commitSucceeded(tp, offset: o)
        }
        checkSafety("the end")
        let left = tracker.commitsDue()
        #expect(left.isEmpty)
    }
}
