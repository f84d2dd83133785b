import Foundation
import SluiceSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct BackoffTests {
    /// The worker's provider retries: 250 ms doubling to 8 s, each between half and all.
    @Test func retryDelaysDoubleUpToTheCapWithJitterDownToHalf() {
        let backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(8), jitter: 0.5...1)
        let ceilings: [Duration] = [.milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8)]
        for (attempt, ceiling) in ceilings.enumerated() {
            #expect(backoff.ceiling(attempt: attempt) == ceiling)
            for _ in 0..<50 {
                let delay = backoff.delay(attempt: attempt)
                #expect(delay >= ceiling / 2 && delay <= ceiling, "attempt \(attempt): \(delay)")
            }
        }
        // No overflow however many attempts.
        #expect(backoff.ceiling(attempt: 10_000) == .seconds(8))
        #expect(backoff.ceiling(attempt: -1) == .milliseconds(250))
    }

    @Test func nextDelayAdvancesAndResetStartsOver() {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        let delays = (0..<7).map { _ in backoff.nextDelay() }
        #expect(delays == [.milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .milliseconds(3200), .seconds(5), .seconds(5)])
        backoff.reset()
        #expect(backoff.nextDelay() == .milliseconds(200))
    }

    @Test func reconnectsAreJitteredByTwentyPercent() {
        var backoff = Backoff.reconnect
        for ceiling: Duration in [.milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1600), .seconds(2)] {
            let delay = backoff.nextDelay()
            #expect(delay >= ceiling * 0.8 && delay <= ceiling * 1.2, "\(delay) for \(ceiling)")
        }
    }
}

@Suite struct HostPortTests {
    @Test func splitsAtTheLastColonAndChecksThePort() {
        #expect(HostPort("127.0.0.1:8080") == HostPort(host: "127.0.0.1", port: 8080))
        #expect(HostPort(":9464") == HostPort(host: "", port: 9464))
        #expect(HostPort("[::1]:80") == HostPort(host: "[::1]", port: 80))
        for bad in ["localhost", "host:", "host:http", "host:65536", "host:-1", ""] {
            #expect(HostPort(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct MonotonicClockTests {
    @Test func readingsGrowWithElapsedTimeAndAreFarFromZero() async throws {
        let a = MonotonicClock.now()
        let n = MonotonicClock.nanoseconds()
        try await Task.sleep(for: .milliseconds(20))
        let b = MonotonicClock.now()
        #expect(b - a >= 0.019)
        #expect(MonotonicClock.nanoseconds() - n >= 19_000_000)
        #expect(a > 0 && Double(n) / 1e9 >= a - 1e-3)
    }
}

@Suite(.timeLimit(.minutes(1))) struct AsyncSemaphoreTests {
    @Test func aReleasedPermitGoesToAWaiter() async {
        let semaphore = AsyncSemaphore(permits: 1)
        #expect(await semaphore.acquire())
        #expect(semaphore.isFull())
        let waiter = Task { await semaphore.acquire() }
        while !semaphore.isFull() { await Task.yield() }
        semaphore.release()
        #expect(await waiter.value)
        #expect(semaphore.inUse == 1)
    }

    /// The worker's lanes: the limited share stops short of the reserve, and a waiting
    /// full-share caller is served before a limited one.
    @Test func theLimitedShareLeavesAReserveAndYieldsToFullWaiters() async {
        let semaphore = AsyncSemaphore(permits: 4, limitedPermits: 3)
        for _ in 0..<3 { #expect(await semaphore.acquire(.limited)) }
        #expect(semaphore.isFull(.limited))
        #expect(!semaphore.isFull(.full))
        // The fourth permit is the reserve: a limited caller waits for it, and leaves
        // without it when cancelled.
        let fourth = Task { await semaphore.acquire(.limited) }
        try? await Task.sleep(for: .milliseconds(50))
        #expect(semaphore.inUse == 3, "a limited caller took the reserve")
        fourth.cancel()
        let tookTheReserve = await fourth.value
        #expect(!tookTheReserve)
        if tookTheReserve { semaphore.release() }
        #expect(await semaphore.acquire(.full))
        let order = Order()
        let limited = Task {
            _ = await semaphore.acquire(.limited)
            order.append("limited")
        }
        try? await Task.sleep(for: .milliseconds(50))
        let full = Task {
            _ = await semaphore.acquire(.full)
            order.append("full")
        }
        try? await Task.sleep(for: .milliseconds(50))
        semaphore.release()  // 3 in use: the full waiter first
        await full.value
        semaphore.release()  // 3 in use again, below nothing for limited (limit 3)
        semaphore.release()  // 2 in use: the limited waiter
        await limited.value
        #expect(order.all == ["full", "limited"])
    }

    /// Without a reserve (a small `max_in_flight`), a freed permit that either waiter
    /// could take goes to the full-share one, however long the limited one has waited.
    @Test func aFreedPermitGoesToAFullWaiterBeforeALimitedOne() async {
        let semaphore = AsyncSemaphore(permits: 1, limitedPermits: 1)
        #expect(await semaphore.acquire(.full))
        let order = Order()
        let limited = Task {
            _ = await semaphore.acquire(.limited)
            order.append("limited")
            semaphore.release()
        }
        try? await Task.sleep(for: .milliseconds(50))
        let full = Task {
            _ = await semaphore.acquire(.full)
            order.append("full")
            semaphore.release()
        }
        try? await Task.sleep(for: .milliseconds(50))
        semaphore.release()
        await full.value
        await limited.value
        #expect(order.all == ["full", "limited"])
    }

    final class Order: Sendable {
        private let list = Mutex<[String]>([])
        func append(_ name: String) { list.withLock { $0.append(name) } }
        var all: [String] { list.withLock { $0 } }
    }

    @Test func aCancelledWaiterLeavesWithoutAPermit() async {
        let semaphore = AsyncSemaphore(permits: 1)
        #expect(await semaphore.acquire())
        let waiter = Task { await semaphore.acquire() }
        try? await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        #expect(await waiter.value == false)
        #expect(semaphore.inUse == 1)
        semaphore.release()
        #expect(semaphore.inUse == 0)
    }

    @Test func stopLetsEveryoneThrough() async {
        let semaphore = AsyncSemaphore(permits: 1)
        #expect(await semaphore.acquire())
        let waiter = Task { await semaphore.acquire(.limited) }
        try? await Task.sleep(for: .milliseconds(20))
        semaphore.stop()
        #expect(await waiter.value)
        #expect(await semaphore.acquire())
        #expect(semaphore.inUse == 3)
    }
}

@Suite(.timeLimit(.minutes(1))) struct ChildProcessTests {
    @Test func commandCollectsOutputAndStatusAndFeedsInput() async throws {
        let result = try await Command.run(["sh", "-c", "cat; echo err >&2; exit 3"], input: Array("in\n".utf8))
        #expect(result.status == 3)
        #expect(result.text == "in\nerr\n")
    }

    @Test func commandStopsAChildPastItsTimeout() async throws {
        let start = ContinuousClock.now
        await #expect(throws: SupportError.self) {
            try await Command.run(["sleep", "30"], timeout: .milliseconds(200))
        }
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    /// A child must stop on SIGTERM even though the threads of this process block it.
    @Test func aLongRunningChildStopsOnSIGTERMAndLogs() async throws {
        let log = Self.logPath("child")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let child = try await ChildProcess(name: "sh", path: "/bin/sh", arguments: ["-c", "echo started; exec sleep 30"], logPath: log)
        #expect(child.isRunning)
        #expect(child.exitDescription == "running")
        let deadline = ContinuousClock.now + .seconds(5)
        while (try? String(contentsOfFile: log, encoding: .utf8)) != "started\n", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        child.signal(SIGTERM)
        #expect(await child.wait(timeout: .seconds(5)) == 128 + SIGTERM)
        #expect(!child.isRunning)
        #expect(child.exitDescription == "signal \(SIGTERM)")
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "started\n")
        child.signal(SIGTERM)  // reaped: nothing to signal, and no harm
    }

    /// What this process ignores (a signal watcher sets SIGINT and SIGTERM to `SIG_IGN`)
    /// and blocks, the child does not: its mask is empty and its dispositions default.
    @Test func aChildStartsWithNoSignalBlockedOrIgnored() async throws {
        let log = Self.logPath("signals")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let previous = Glibc.signal(SIGUSR2, SIG_IGN)
        defer { _ = Glibc.signal(SIGUSR2, previous) }
        let child = try await ChildProcess(name: "cat", path: "/bin/cat", arguments: ["/proc/self/status"], logPath: log)
        #expect(await child.wait(timeout: .seconds(10)) == 0)
        let status = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        func mask(_ field: String) throws -> UInt64 {
            let line = try #require(status.first { $0.hasPrefix(field + ":") }, "no \(field) in /proc/self/status")
            return try #require(UInt64(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces), radix: 16))
        }
        #expect(try mask("SigBlk") == 0)
        // Signals 1 to 31; glibc keeps the real-time ones from 32 on to itself, and a
        // program that uses them sets them up when it starts.
        let ignored = try mask("SigIgn") & 0x7fff_ffff
        #expect(ignored == 0, "the child ignores \((1...31).filter { ignored & (1 << ($0 - 1)) != 0 })")
    }

    /// A descriptor this process opened without close-on-exec (a socket, a log) stays ours.
    @Test func aChildInheritsNoDescriptorButTheStandardThree() async throws {
        let log = Self.logPath("fds")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let devNull = open("/dev/null", O_RDONLY)
        let fd = fcntl(devNull, F_DUPFD, 200)
        close(devNull)
        try #require(fd >= 200)
        defer { close(fd) }
        #expect(FileManager.default.fileExists(atPath: "/proc/self/fd/\(fd)"))
        let child = try await ChildProcess(name: "test", path: "/usr/bin/test", arguments: ["!", "-e", "/proc/self/fd/\(fd)"], logPath: log)
        #expect(await child.wait(timeout: .seconds(10)) == 0, "descriptor \(fd) leaked into the child")
    }

    /// `stop()` sends SIGTERM, then SIGKILL once the grace period is over.
    @Test func stopKillsAChildThatIgnoresSIGTERMAfterItsGrace() async throws {
        let log = Self.logPath("stubborn")
        defer { try? FileManager.default.removeItem(atPath: log) }
        // An ignored signal stays ignored across exec: `sleep` ignores SIGTERM.
        let stubborn = try await ChildProcess(
            name: "sh", path: "/bin/sh", arguments: ["-c", "trap '' TERM; echo ready; exec sleep 30"], logPath: log,
            grace: .milliseconds(300))
        let deadline = ContinuousClock.now + .seconds(5)
        while (try? String(contentsOfFile: log, encoding: .utf8)) != "ready\n", ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let start = ContinuousClock.now
        #expect(await stubborn.stop() == true)
        #expect(ContinuousClock.now - start >= .milliseconds(300))
        #expect(stubborn.exitCode == 128 + SIGKILL)

        let polite = try await ChildProcess(name: "sleep", path: "/bin/sleep", arguments: ["30"], logPath: log, truncateLog: false)
        #expect(await polite.wait(timeout: .milliseconds(50)) == nil)
        #expect(await polite.stop() == false)
        #expect(polite.exitCode == 128 + SIGTERM)
        #expect(await polite.stop() == false)  // twice is fine
    }

    @Test func aChildAppendsToItsLogUnlessToldToTruncate() async throws {
        let log = Self.logPath("append")
        defer { try? FileManager.default.removeItem(atPath: log) }
        for (word, truncate) in [("one", true), ("two", false)] {
            let child = try await ChildProcess(name: "echo", path: "/bin/echo", arguments: [word], logPath: log, truncateLog: truncate)
            #expect(await child.wait() == 0)
        }
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "one\ntwo\n")
        let again = try await ChildProcess(name: "echo", path: "/bin/echo", arguments: ["three"], logPath: log)
        #expect(await again.wait() == 0)
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "three\n")
    }

    @Test func aMissingProgramIsAnErrorThatNamesIt() async throws {
        let log = Self.logPath("missing")
        defer { try? FileManager.default.removeItem(atPath: log) }
        let error = await #expect(throws: SupportError.self) {
            try await ChildProcess(name: "ghost", path: "/nonexistent/ghost", arguments: [], logPath: log)
        }
        #expect(error?.message.contains("/nonexistent/ghost") == true, "\(error?.message ?? "")")
    }

    static func logPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(name)-\(UUID().uuidString.prefix(8)).log").path
    }

    @Test func aGroupReportsADeadChildWithItsLog() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-group-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try await ChildProcessGroup.with(logDir: dir) { group in
            let sleeper = try await group.start("sleeper", "/bin/sleep", ["30"])
            try await group.start("quitter", "/bin/sh", ["-c", "echo giving up; exit 2"])
            let dead = await group.waitForExit()
            #expect(dead?.hasPrefix("quitter exited (exit status 2)") == true, "\(dead ?? "nil")")
            #expect(dead?.contains("giving up") == true)
            await #expect(throws: SupportError.self) { try await group.waitForPort(LoopbackPort.free(), name: "nothing", timeout: .milliseconds(100)) }
            #expect(sleeper.isRunning)
            #expect(try await group.run("tool", "/bin/sh", ["-c", "exit 0"], timeout: .seconds(10)))
            #expect(try await group.run("slow tool", "/bin/sleep", ["30"], timeout: .milliseconds(100)) == false)
            await group.stopAll()
            #expect(sleeper.exitCode == 128 + SIGTERM)
            await #expect(throws: SupportError.self) { try await group.start("late", "/bin/sleep", ["30"]) }
        }
    }
}
