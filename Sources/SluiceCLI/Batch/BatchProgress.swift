import Foundation
import Logging
import SluiceCore
import Synchronization
import SluiceSupport

#if canImport(Glibc)
import Glibc
#endif

// What `sluice batch` shows people: the progress display, log lines through it, and
// numbers made readable.

/// Progress on stderr: on a terminal one line redrawn in place, otherwise a plain line
/// every `interval` seconds. Other messages (bad lines, logs) go through `note`, which
/// keeps them from being drawn over.
final class ProgressDisplay: Sendable {
    let isTerminal: Bool
    let enabled: Bool
    let interval: Double
    private struct State {
        var shown = ""
        var lastDraw = -Double.infinity
    }
    private let state = Mutex(State())

    init(enabled: Bool, interval: Double) {
        self.isTerminal = isatty(STDERR_FILENO) == 1
        self.enabled = enabled
        self.interval = interval
    }

    /// How often the caller should offer an update.
    var refresh: Double { isTerminal ? 0.25 : interval }

    /// A message that stays: clears the progress line, writes, redraws.
    func note(_ text: String) {
        state.withLock { s in
            if isTerminal, !s.shown.isEmpty {
                ProgressDisplay.write("\r\u{1B}[K" + text + "\n" + s.shown)
            } else {
                ProgressDisplay.write(text + "\n")
            }
        }
    }

    /// Draws the progress line if it is time (`force` draws now).
    func update(_ line: @autoclosure () -> String, now: Double, force: Bool = false) {
        guard enabled else { return }
        state.withLock { s in
            guard force || now - s.lastDraw >= refresh else { return }
            s.lastDraw = now
            let text = line()
            if isTerminal {
                let fitted = ProgressDisplay.fit(text, width: ProgressDisplay.terminalWidth() - 1)
                s.shown = fitted
                ProgressDisplay.write("\r\u{1B}[K" + fitted)
            } else {
                ProgressDisplay.write(text + "\n")
            }
        }
    }

    /// Removes the progress line (before the summary).
    func clear() {
        state.withLock { s in
            if isTerminal, !s.shown.isEmpty { ProgressDisplay.write("\r\u{1B}[K") }
            s.shown = ""
        }
    }

    private static func write(_ text: String) {
        var text = text
        text.withUTF8 { buf in
            var offset = 0
            while offset < buf.count {
                let n = Glibc.write(STDERR_FILENO, buf.baseAddress! + offset, buf.count - offset)
                if n <= 0 {
                    if n < 0, errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }

    /// A line longer than the terminal would wrap, and `\r` would then redraw only its
    /// last row.
    private static func fit(_ text: String, width: Int) -> String {
        guard width > 4, text.count > width else { return text }
        return String(text.prefix(width - 1)) + "…"
    }

    private static func terminalWidth() -> Int {
        var size = winsize()
        if ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return Int(ProcessInfo.processInfo.environment["COLUMNS"] ?? "") ?? 100
    }
}

/// Log lines of the batch (and of the Kafka client under it) through the display, so a
/// warning never lands in the middle of the progress line.
struct BatchLogHandler: LogHandler {
    let label: String
    let display: ProgressDisplay
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })
        let meta = all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        display.note("\(event.level): \(event.message)\(meta)")
    }
}

/// Numbers for people.
enum Human {
    static func count(_ n: Int) -> String {
        switch abs(n) {
        case 0..<10_000: return "\(n)"
        case 10_000..<1_000_000: return String(format: "%.1fk", Double(n) / 1_000)
        case 1_000_000..<1_000_000_000: return String(format: "%.2fM", Double(n) / 1_000_000)
        default: return String(format: "%.2fG", Double(n) / 1_000_000_000)
        }
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "--" }
        let t = Int(saturating: s.rounded())
        if s < 10 { return String(format: "%.1fs", s) }
        if t < 60 { return "\(t)s" }
        if t < 3600 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
        return "\(t / 3600)h\(String(format: "%02d", (t % 3600) / 60))m"
    }

    static func cost(_ usd: Double) -> String {
        usd < 1 ? String(format: "$%.4f", usd) : String(format: "$%.2f", usd)
    }

    static func rate(_ r: Double) -> String {
        r < 10 ? String(format: "%.1f/s", r) : String(format: "%.0f/s", r)
    }
}
