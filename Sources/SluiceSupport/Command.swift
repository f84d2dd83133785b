import Subprocess

#if canImport(Glibc)
import Glibc
#endif

/// Runs a program to its end with swift-subprocess: its input given, its stdout and
/// stderr collected together. The child starts with an empty signal mask, default
/// signal dispositions and no descriptor of ours but 0, 1 and 2; past `timeout` it gets
/// SIGTERM, then SIGKILL 2 s later.
///
/// (Foundation's `Process` is not used: on Linux its `run()` can crash a process that
/// has a thousand or so descriptors open, as a test with hundreds of streams does.)
public enum Command {
    public struct Result: Sendable {
        /// The exit code, or 128 + the signal that ended it.
        public var status: Int32
        /// stdout and stderr, interleaved as written.
        public var output: [UInt8]
        public var text: String { String(decoding: output, as: UTF8.self) }
    }

    /// Runs `arguments` (the first found on `PATH` unless it is a path); `environment`
    /// replaces this process's when given.
    public static func run(
        _ arguments: [String], environment: [String: String]? = nil, input: [UInt8] = [],
        timeout: Duration = .seconds(120), outputLimit: Int = 64 << 20
    ) async throws -> Result {
        guard let program = arguments.first else { throw SupportError("Command.run needs a program to run") }
        let executable: Executable = program.contains("/") ? .path(.init(program)) : .name(program)
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(2))]
        let env: Environment = environment.map { values in
            .custom(Dictionary(uniqueKeysWithValues: values.map { (Environment.Key(rawValue: $0.key)!, $0.value) }))
        } ?? .inherit
        let options_ = options
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask {
                let result = try await Subprocess.run(
                    executable, arguments: Arguments(Array(arguments.dropFirst())), environment: env,
                    platformOptions: options_, input: .array(input), output: .bytes(limit: outputLimit), error: .combinedWithOutput)
                let status: Int32 = switch result.terminationStatus {
                case .exited(let code): code
                case .signaled(let signal): 128 + signal
                }
                return Result(status: status, output: result.standardOutput)
            }
            group.addTask {
                // Cancelling the run tears the child down (SIGTERM, then SIGKILL).
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else {
                throw SupportError("\(program) did not finish within \(timeout)")
            }
            return result
        }
    }
}
