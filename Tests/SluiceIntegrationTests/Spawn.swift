import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a child process with `posix_spawn`, for tests that drive scripts.
///
/// Not `Foundation.Process`: on Linux its `run()` can crash the whole test process
/// (swift-corelibs-foundation #5472: an over-read while listing `/proc/self/fd`, likely
/// once a process has a thousand or so descriptors open, as a test with hundreds of
/// streams does). Here the child gets stdin/stdout/stderr and closes every other
/// descriptor (`posix_spawn_file_actions_addclosefrom_np`), so it cannot hold a test's
/// sockets open; its signal mask and dispositions are reset (Swift's threads block
/// signals the child must not inherit).
enum Spawn {
    struct Result: Sendable {
        var status: Int32
        /// stdout and stderr, interleaved as written.
        var output: [UInt8]
        var text: String { String(decoding: output, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `arguments` (the first found on `PATH`) to completion, blocking the calling
    /// thread; kills it after `timeout`.
    static func runBlocking(
        _ arguments: [String], environment: [String: String]? = nil, input: [UInt8] = [], timeout: Duration = .seconds(120)
    ) throws -> Result {
        var stdinPipe: [Int32] = [-1, -1]
        var outputPipe: [Int32] = [-1, -1]
        guard GNU.pipe2(&stdinPipe, O_CLOEXEC) == 0, GNU.pipe2(&outputPipe, O_CLOEXEC) == 0 else {
            throw Failure(description: "pipe2 failed: errno \(errno)")
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, outputPipe[1], 2)
        _ = GNU.addCloseFrom(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        var pid: pid_t = 0
        let spawned = withCStrings(arguments) { argv in
            withCStrings(env) { envp in
                posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, envp)
            }
        }
        close(stdinPipe[0])
        close(outputPipe[1])
        guard spawned == 0 else {
            close(stdinPipe[1])
            close(outputPipe[0])
            throw Failure(description: "cannot start \(arguments[0]): errno \(spawned)")
        }

        // Feed stdin from a thread of its own, so a child that writes before it has read
        // everything cannot deadlock us.
        let writer = Thread { [stdinFD = stdinPipe[1]] in
            input.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let n = write(stdinFD, buffer.baseAddress! + offset, buffer.count - offset)
                    if n < 0, errno == EINTR { continue }
                    if n <= 0 { break }
                    offset += n
                }
            }
            close(stdinFD)
        }
        writer.start()

        let killer = DispatchWorkItem { kill(pid, SIGKILL) }
        let (seconds, attoseconds) = timeout.components
        DispatchQueue.global().asyncAfter(deadline: .now() + Double(seconds) + Double(attoseconds) / 1e18, execute: killer)

        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(outputPipe[0], $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        close(outputPipe[0])

        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        killer.cancel()
        let exited = status & 0x7f == 0
        return Result(status: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), output: output)
    }

    /// As `runBlocking`, on a thread of its own rather than the cooperative pool.
    static func run(
        _ arguments: [String], environment: [String: String]? = nil, input: [UInt8] = [], timeout: Duration = .seconds(120)
    ) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Swift.Result { try runBlocking(arguments, environment: environment, input: input, timeout: timeout) })
            }
            thread.start()
        }
    }

    /// glibc functions the Glibc module does not declare (they need `_GNU_SOURCE`),
    /// looked up once.
    private enum GNU {
        typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
        typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        static let pipe2: Pipe2 = unsafeBitCast(dlsym(nil, "pipe2")!, to: Pipe2.self)
        static let addCloseFrom: AddCloseFrom = unsafeBitCast(dlsym(nil, "posix_spawn_file_actions_addclosefrom_np")!, to: AddCloseFrom.self)
    }

    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        return body(pointers)
    }
}
