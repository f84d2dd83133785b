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

/// The end of a run, for people (text) and programs (`--json`).
struct BatchSummary: Encodable {
    enum Outcome: String, Encodable {
        case completed, interrupted, aborted
    }

    struct InvalidLine: Encodable, Sendable {
        var line: Int
        var reason: String
    }

    struct DuplicateLine: Encodable, Sendable {
        var line: Int
        var customID: String
        var firstLine: Int

        enum CodingKeys: String, CodingKey {
            case line
            case customID = "custom_id"
            case firstLine = "first_line"
        }
    }

    var outcome: Outcome
    var batchID: String
    var input: String
    var output: String
    var succeeded: Int
    var failed: Int
    var skipped: Int
    var invalid: Int
    var duplicates: Int
    var submitted: Int
    /// Submitted but without a result when the run ended.
    var unfinished: Int
    var inputComplete: Bool
    var inputTokens: Int
    var outputTokens: Int
    var totalTokens: Int
    var costUSD: Double
    /// Results with tokens but no price (their cost is not in `cost_usd`).
    var unpriced: Int
    var wallTimeS: Double
    /// The first hundred of each, in input order.
    var invalidLines: [InvalidLine]
    var duplicateLines: [DuplicateLine]
    var error: String?

    enum CodingKeys: String, CodingKey {
        case outcome, input, output, succeeded, failed, skipped, invalid, duplicates, submitted, unfinished, unpriced, error
        case batchID = "batch_id"
        case inputComplete = "input_complete"
        case inputTokens = "input_tokens"
        case outputTokens = "output_tokens"
        case totalTokens = "total_tokens"
        case costUSD = "cost_usd"
        case wallTimeS = "wall_time_s"
        case invalidLines = "invalid_lines"
        case duplicateLines = "duplicate_lines"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(batchID, forKey: .batchID)
        try c.encode(input, forKey: .input)
        try c.encode(output, forKey: .output)
        try c.encode(succeeded, forKey: .succeeded)
        try c.encode(failed, forKey: .failed)
        try c.encode(skipped, forKey: .skipped)
        try c.encode(invalid, forKey: .invalid)
        try c.encode(duplicates, forKey: .duplicates)
        try c.encode(submitted, forKey: .submitted)
        try c.encode(unfinished, forKey: .unfinished)
        try c.encode(inputComplete, forKey: .inputComplete)
        try c.encode(inputTokens, forKey: .inputTokens)
        try c.encode(outputTokens, forKey: .outputTokens)
        try c.encode(totalTokens, forKey: .totalTokens)
        try c.encode(costUSD, forKey: .costUSD)
        try c.encode(unpriced, forKey: .unpriced)
        try c.encode(wallTimeS, forKey: .wallTimeS)
        try c.encode(invalidLines, forKey: .invalidLines)
        try c.encode(duplicateLines, forKey: .duplicateLines)
        try c.encode(error, forKey: .error)
    }

    var text: String {
        var out: String
        switch outcome {
        case .completed:
            out = "batch \(batchID): done in \(Human.duration(wallTimeS))\n"
        case .interrupted:
            out = "batch \(batchID): interrupted after \(Human.duration(wallTimeS)); run the same command again to resume\n"
        case .aborted:
            out = "batch \(batchID): stopped after \(Human.duration(wallTimeS)): \(error ?? "unknown error")\n"
        }
        func row(_ name: String, _ value: String) { out += "  " + name.padding(toLength: 13, withPad: " ", startingAt: 0) + value + "\n" }
        row("output", output)
        row("succeeded", "\(succeeded)")
        row("failed", "\(failed)" + (failed > 0 ? "  (status_code >= 400 and \"error\" in their lines)" : ""))
        row("skipped", "\(skipped)" + (skipped > 0 ? "  (already in the output)" : ""))
        row("invalid", "\(invalid)" + (invalid > 0 ? (invalid == 1 ? "  line " : "  lines ") + BatchRunner.list(invalidLines.map(\.line), total: invalid, limit: 20) : ""))
        var dups = "\(duplicates)"
        if duplicates > 0 {
            dups += "  " + duplicateLines.prefix(10).map { "line \($0.line) (\(BatchRunner.quoted($0.customID)), first on line \($0.firstLine))" }
                .joined(separator: ", ")
            if duplicates > 10 { dups += " and \(duplicates - 10) more" }
        }
        row("duplicates", dups)
        if unfinished > 0 { row("unfinished", "\(unfinished)  (submitted, no result yet: they run again on resume)") }
        row("tokens", "\(inputTokens) in, \(outputTokens) out, \(totalTokens) total")
        row("cost", Human.cost(costUSD) + (unpriced > 0 ? "  (+ \(unpriced) results with no price for their model)" : ""))
        let finished = succeeded + failed
        row("wall time", Human.duration(wallTimeS) + (finished > 0 && wallTimeS > 0 ? "  (\(Human.rate(Double(finished) / wallTimeS)))" : ""))
        return out
    }
}
