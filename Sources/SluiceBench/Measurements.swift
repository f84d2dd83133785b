import Foundation
import Histogram

#if canImport(Glibc)
import Glibc
#endif


/// Latencies in microseconds, in an HdrHistogram (1 µs to 10 min, 3 significant digits).
public struct LatencyHistogram: Sendable {
    private var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)

    public init() {}

    public var count: Int { Int(histogram.totalCount) }

    public mutating func record(nanoseconds: Int64) {
        let micros = max(1, nanoseconds / 1_000)
        _ = histogram.record(UInt64(min(micros, 600_000_000)))
    }

    public mutating func add(_ other: LatencyHistogram) { histogram.add(other.histogram) }

    /// The value at `percentile` (0–100), in milliseconds.
    public func ms(_ percentile: Double) -> Double {
        count == 0 ? .nan : Double(histogram.valueAtPercentile(percentile)) / 1_000
    }

    public var maxMs: Double { count == 0 ? .nan : Double(histogram.max) / 1_000 }

    public var summary: LatencySummary {
        LatencySummary(count: count, p50Ms: ms(50), p90Ms: ms(90), p99Ms: ms(99), maxMs: maxMs)
    }
}

/// Percentiles of a ``LatencyHistogram``, in milliseconds.
public struct LatencySummary: Sendable, Codable {
    public var count: Int
    public var p50Ms: Double
    public var p90Ms: Double
    public var p99Ms: Double
    public var maxMs: Double

    enum CodingKeys: String, CodingKey {
        case count
        case p50Ms = "p50_ms"
        case p90Ms = "p90_ms"
        case p99Ms = "p99_ms"
        case maxMs = "max_ms"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(count, forKey: .count)
        for (key, value) in [(CodingKeys.p50Ms, p50Ms), (.p90Ms, p90Ms), (.p99Ms, p99Ms), (.maxMs, maxMs)] {
            if value.isFinite { try c.encode((value * 1000).rounded() / 1000, forKey: key) } else { try c.encodeNil(forKey: key) }
        }
    }
}

/// What /proc says about a process: CPU time and resident memory.
public enum ProcStats {
    /// User plus system CPU seconds the process has used.
    public static func cpuSeconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after "(comm)": state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let utime = Double(fields[11]), let stime = Double(fields[12]) else { return nil }
        return (utime + stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A `kB` field of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
    public static func statusBytes(pid: Int32, field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    public static func rssBytes(pid: Int32) -> Int? { statusBytes(pid: pid, field: "VmRSS") }

    /// CPU seconds of the process and of every process below it (a proxy that runs its
    /// work in child processes); children that already exited are not counted.
    public static func treeCPUSeconds(pid: Int32) -> Double? {
        guard var total = cpuSeconds(pid: pid) else { return nil }
        var parents: Set<Int32> = [pid]
        var found = true
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        var counted: Set<Int32> = [pid]
        while found {
            found = false
            for child in entries where !counted.contains(child) {
                guard let ppid = parentPID(child), parents.contains(ppid) else { continue }
                counted.insert(child)
                parents.insert(child)
                total += cpuSeconds(pid: child) ?? 0
                found = true
            }
        }
        return total
    }

    static func parentPID(_ pid: Int32) -> Int32? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 1 ? Int32(fields[1]) : nil
    }
}

/// The machine a run measured.
public struct MachineInfo: Sendable, Codable {
    public var cpus: Int
    public var memoryGiB: Double
    public var cpuModel: String
    public var kernel: String

    enum CodingKeys: String, CodingKey {
        case cpus
        case memoryGiB = "memory_gib"
        case cpuModel = "cpu_model"
        case kernel
    }

    public static func current() -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let totalKB = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) } } ?? 0
        var uts = utsname()
        uname(&uts)
        let release = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return MachineInfo(
            cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), memoryGiB: (totalKB / 1_048_576 * 10).rounded() / 10,
            cpuModel: model.isEmpty ? "unknown" : model, kernel: "Linux " + release)
    }
}

