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

// What the batch's three loops share: the jobs in flight, the counts, the finishing rate.

struct InFlightJob: Sendable {
    var customID: String
    var line: Int
}

/// What the three loops share.
struct BatchLedger: Sendable {
    static let shownPerKind = 100

    var inputBytes: Int64
    var bytesRead: Int64 = 0
    var inputDone = false
    var stopping = false
    var abortReason: String?

    var inFlight: [String: InFlightJob] = [:]
    var submitted = 0
    var succeeded = 0
    var failed = 0
    var skipped = 0
    var invalid = 0
    var duplicates = 0
    var invalidShown: [BatchSummary.InvalidLine] = []
    var duplicatesShown: [BatchSummary.DuplicateLine] = []

    var inputTokens = 0
    var outputTokens = 0
    var totalTokens = 0
    var costUSD = 0.0
    var unpriced = 0
    /// How long the latest results were held by a provider's rate limit (a moving
    /// average of their `rate_limit_wait_s`), nil before the first.
    var recentRateLimitWait: Double?
    /// The last result, or when jobs began to be in flight again: the stall clock.
    var lastActivity: Double

    init(inputBytes: Int64, now: Double) {
        self.inputBytes = inputBytes
        self.lastActivity = now
    }

    mutating func register(_ jobID: String, _ job: InFlightJob, now: Double) {
        if inFlight.isEmpty { lastActivity = now }
        inFlight[jobID] = job
        submitted += 1
    }

    mutating func record(_ r: UnifiedResponse, now: Double) {
        if r.status == .succeeded { succeeded += 1 } else { failed += 1 }
        inputTokens += r.metrics.inputTokens
        outputTokens += r.metrics.outputTokens
        totalTokens += r.metrics.totalTokens
        if let c = r.metrics.costUSD { costUSD += c } else if r.metrics.totalTokens > 0 { unpriced += 1 }
        let wait = r.metrics.rateLimitWaitS
        recentRateLimitWait = recentRateLimitWait.map { $0 * 0.8 + wait * 0.2 } ?? wait
        lastActivity = now
    }

    /// Whether the jobs are being paced by a provider's rate limit.
    var heldByRateLimit: Bool { (recentRateLimitWait ?? 0) >= 0.5 }

    mutating func recordFailure(now: Double) {
        failed += 1
        lastActivity = now
    }

    /// The first reason wins; later failures are usually its consequences.
    mutating func abort(because reason: String) {
        if abortReason == nil { abortReason = reason }
    }

    /// Returns whether the line should be shown (the first hundred are).
    mutating func noteInvalid(line: Int, reason: String) -> Bool {
        invalid += 1
        guard invalidShown.count < Self.shownPerKind else { return false }
        invalidShown.append(.init(line: line, reason: reason))
        return true
    }

    mutating func noteDuplicate(line: Int, customID: String, first: Int) -> Bool {
        duplicates += 1
        guard duplicatesShown.count < Self.shownPerKind else { return false }
        duplicatesShown.append(.init(line: line, customID: customID, firstLine: first))
        return true
    }
}

/// Results per second over the last ten seconds.
struct RateWindow {
    private var samples: [(time: Double, finished: Int)] = []

    mutating func add(now: Double, finished: Int) {
        if let last = samples.last, now - last.time < 0.5 { return }
        samples.append((now, finished))
        while let first = samples.first, now - first.time > 10 { samples.removeFirst() }
    }

    var rate: Double? {
        guard let first = samples.first, let last = samples.last, last.time - first.time >= 1 else { return nil }
        return Double(last.finished - first.finished) / (last.time - first.time)
    }
}
