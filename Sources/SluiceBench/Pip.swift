import Foundation
import SluiceSupport

/// Python packages the bench needs but Sluice does not (the peer, the plots), installed
/// on first use with `pip install --target` into a folder of `.deps`, so nothing touches
/// the system's Python.
enum Pip {
    /// Installs `requirement` into `target` unless `marker` (a path inside it) is there.
    /// Throws a ``BenchError`` that says why when pip fails or runs out of time.
    static func ensure(
        _ requirement: String, into target: URL, marker: String, timeout: Duration,
        python: String, children: ChildProcessGroup, step: @Sendable (String) -> Void
    ) async throws {
        let installed = target.appendingPathComponent(marker).path
        if FileManager.default.fileExists(atPath: installed) { return }
        step("installing \(requirement) into \(target.path) (pip install --target)")
        let name = "pip-" + requirement.prefix { $0.isLetter || $0.isNumber }
        let finished = try await children.run(name, python, [
            "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", target.path, requirement,
        ], timeout: timeout)
        guard finished else {
            throw BenchError("pip install \(requirement) did not finish in \(timeout.components.seconds) s")
        }
        guard FileManager.default.fileExists(atPath: installed) else {
            throw BenchError("pip install \(requirement) failed; see \(children.logPath(name))")
        }
    }
}
