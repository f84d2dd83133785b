import Foundation
import Logging
import SluiceRedis
import SluiceSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The Redis client against a real `redis-server`: the one at `SLUICE_TEST_REDIS_URL`, or
/// one started per test on a free loopback port. Tests that restart or reconfigure Redis
/// always start their own. Every test uses its own keys and channels.
@Suite(.needsServices, .timeLimit(.minutes(2)))
struct RedisClientTests {
    // MARK: Configuration

    @Test func parsesURLs() throws {
        let full = try RedisConfiguration(url: "redis://alice:s3cr%40t@cache.internal:6380/2")
        #expect(full.host == "cache.internal")
        #expect(full.port == 6380)
        #expect(full.username == "alice")
        #expect(full.password == "s3cr@t")
        #expect(full.database == 2)

        let minimal = try RedisConfiguration(url: "redis://localhost")
        #expect(minimal.host == "localhost")
        #expect(minimal.port == 6379)
        #expect(minimal.username == nil)
        #expect(minimal.password == nil)
        #expect(minimal.database == 0)

        let passwordOnly = try RedisConfiguration(url: "redis://:hunter2@127.0.0.1:7000/")
        #expect(passwordOnly.username == nil)
        #expect(passwordOnly.password == "hunter2")
        #expect(passwordOnly.port == 7000)
        #expect(passwordOnly.database == 0)

        let ipv6 = try RedisConfiguration(url: "REDIS://[::1]:6390/15")
        #expect(ipv6.host == "::1")
        #expect(ipv6.port == 6390)
        #expect(ipv6.database == 15)
        #expect(ipv6.description == "redis://[::1]:6390/15")
    }

    @Test(arguments: [
        ("localhost:6379", "missing \"redis://\""),
        ("http://localhost", "scheme \"http\" is not \"redis\""),
        ("rediss://localhost", "TLS (rediss://) is not supported"),
        ("redis://", "the host is empty"),
        ("redis://:pw@:6379", "the host is empty"),
        ("redis://localhost:http", "port \"http\" is not a number from 1 to 65535"),
        ("redis://localhost:0", "port \"0\" is not a number from 1 to 65535"),
        ("redis://localhost:65536", "port \"65536\" is not a number from 1 to 65535"),
        ("redis://localhost/one", "database \"one\" is not a non-negative number"),
        ("redis://localhost/-1", "database \"-1\" is not a non-negative number"),
        ("redis://localhost?db=1", "query and fragment are not supported"),
        ("redis://[::1:6379", "IPv6 host is missing its closing \"]\""),
        ("redis://:p%zzw@localhost", "bad percent-encoding in the password"),
    ])
    func rejectsBadURLs(url: String, problem: String) {
        #expect {
            try RedisConfiguration(url: url)
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .invalidURL && error.message.contains(problem) && !error.message.contains("zz")
        }
    }

    @Test func descriptionHidesThePassword() throws {
        let configuration = try RedisConfiguration(url: "redis://alice:hunter2@cache:6380/1")
        #expect(configuration.description == "redis://alice:***@cache:6380/1")
        var dumped = ""
        dump(configuration, to: &dumped)
        for text in ["\(configuration)", String(describing: configuration), String(reflecting: configuration), dumped] {
            #expect(!text.contains("hunter2"), "password leaked in \(text)")
        }
        let anonymous = try RedisConfiguration(url: "redis://:hunter2@cache")
        #expect(anonymous.description == "redis://:***@cache:6379/0")
    }

    // MARK: Commands

    @Test func executeRoundTrips() async throws {
        try await withRedis { url, _ in
            let connection = RedisConnection(configuration: try RedisConfiguration(url: url), logger: testLogger)
            defer { connection.shutdown() }
            let key = uniqueName("bytes")
            let counter = uniqueName("counter")

            // Binary-safe: every byte value, NUL and CRLF included.
            let value = (0...255).map(UInt8.init) + Array("\r\n\0end".utf8)
            var set = RedisCommand("SET", key)
            set.append(value)
            #expect(try await connection.execute(set) == .status("OK"))
            #expect(try await connection.execute(RedisCommand("GET", key)) == .bulk(value))
            #expect(try await connection.execute(RedisCommand("GET", uniqueName("missing"))) == .null)

            #expect(try await connection.execute(RedisCommand("INCR", counter)) == .integer(1))
            var incrementBy = RedisCommand("INCRBY", counter)
            incrementBy.append(41)
            #expect(try await connection.execute(incrementBy).int == 42)

            // An error reply is a value, not a thrown error, and does not disturb what follows.
            let replies = try await connection.execute([
                RedisCommand("INCR", key),
                RedisCommand("NOSUCHCOMMAND"),
                RedisCommand("GET", counter),
                RedisCommand("MGET", counter, uniqueName("missing")),
            ])
            #expect(replies.count == 4)
            #expect(replies[0].errorMessage?.hasPrefix("ERR value is not an integer") == true)
            #expect(replies[1].errorMessage?.hasPrefix("ERR unknown command") == true)
            #expect(replies[2] == .bulk(Array("42".utf8)))
            #expect(replies[3] == .array([.bulk(Array("42".utf8)), .null]))

            await #expect(throws: RedisError.self) {
                try await connection.execute(RedisCommand([]))
            }
            #expect(connection.isConnected)
        }
    }

    /// Plain, batched and pre-formatted sends interleaved: every reply is read for the
    /// right command (else the LRANGE below would get someone else's reply).
    @Test func fireAndForgetCommandsArriveInOrder() async throws {
        try await withRedis { url, _ in
            let configuration = try RedisConfiguration(url: url)
            let connection = RedisConnection(configuration: configuration, logger: testLogger)
            let subscriber = RedisSubscriber(configuration: configuration, logger: testLogger)
            defer {
                connection.shutdown()
                subscriber.shutdown()
            }
            let key = uniqueName("list")
            let channel = uniqueName("channel")
            let subscription = try await subscriber.subscribe(to: channel)
            let count = 10_000

            for index in 0..<count {
                if index % 3 == 2 {
                    // Pre-formatted RESP, two commands in one unit (the per-chunk path).
                    var resp: [UInt8] = []
                    RESPWriter.command(3, into: &resp)
                    RESPWriter.bulk("RPUSH", into: &resp)
                    RESPWriter.bulk(Array(key.utf8), into: &resp)
                    RESPWriter.bulk(index, into: &resp)
                    RESPWriter.command(3, into: &resp)
                    RESPWriter.bulk("PUBLISH", into: &resp)
                    RESPWriter.bulk(Array(channel.utf8), into: &resp)
                    RESPWriter.bulk(index, into: &resp)
                    connection.send(.formatted(resp, commands: 2))
                } else if index % 2 == 0 {
                    connection.send(RedisCommand("RPUSH", key, String(index)))
                    connection.send(RedisCommand("PUBLISH", channel, String(index)))
                } else {
                    connection.send([RedisCommand("RPUSH", key, String(index)), RedisCommand("PUBLISH", channel, String(index))])
                }
            }
            // Queued after the sends, so it runs after all of them.
            let list = try await connection.execute(RedisCommand("LRANGE", key, "0", "-1"))
            #expect(list.array?.compactMap(\.string) == (0..<count).map(String.init))

            var received: [String] = []
            var events = subscription.makeAsyncIterator()
            while received.count < count, let event = try await nextEvent(&events, of: subscription) {
                guard case .message(let payload) = event else {
                    Issue.record("unexpected \(event)")
                    break
                }
                received.append(String(decoding: payload, as: UTF8.self))
            }
            #expect(received == (0..<count).map(String.init))
            #expect(connection.droppedCommandCount == 0)
        }
    }

    /// Commands queued without a wake go at the first `wakeIfIdle`, then wait out its
    /// interval: the curl thread's trickle of paced chunk events costs one wake per
    /// interval. Any plain send wakes the thread and takes them along.
    @Test func deferredWakesComeAtMostOncePerInterval() async throws {
        try await withRedis { url, _ in
            let configuration = try RedisConfiguration(url: url)
            let writer = RedisConnection(configuration: configuration, logger: testLogger)
            let reader = RedisConnection(configuration: configuration, logger: testLogger)
            defer {
                writer.shutdown()
                reader.shutdown()
            }
            let key = uniqueName("deferred")
            _ = try await writer.execute(RedisCommand("PING"))
            // Each round queues a new value and asks for a wake; once the thread sleeps,
            // one round wakes it (the value is written) and the next must wait.
            var held: (value: Int, wait: Duration)?
            for round in 0..<100 where held == nil {
                writer.sendWithoutWaking(RedisCommand("SET", key, String(round)))
                if let wait = writer.wakeIfIdle(atMostEvery: .seconds(60)) {
                    held = (round, wait)
                } else {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            let (value, wait) = try #require(held)
            #expect(wait > .seconds(50) && wait <= .seconds(60))
            // The previous round's value was written by the wake; this one waits.
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await reader.execute(RedisCommand("GET", key)).string == String(value - 1))
            // A plain send wakes the thread and the held command goes first.
            writer.send(RedisCommand("APPEND", key, "+"))
            try await eventually { try await reader.execute(RedisCommand("GET", key)).string == "\(value)+" }
        }
    }

    // MARK: Pub/Sub

    @Test func subscribeThenPublishNeverMissesTheFirstMessage() async throws {
        try await withRedis { url, _ in
            let configuration = try RedisConfiguration(url: url)
            let connection = RedisConnection(configuration: configuration, logger: testLogger)
            let subscriber = RedisSubscriber(configuration: configuration, logger: testLogger)
            defer {
                connection.shutdown()
                subscriber.shutdown()
            }
            for round in 0..<50 {
                let channel = uniqueName("first-\(round)")
                let subscription = try await subscriber.subscribe(to: channel)
                // Publish from another connection right after subscribe returns.
                #expect(try await connection.execute(RedisCommand("PUBLISH", channel, "hello \(round)")) == .integer(1))
                var events = subscription.makeAsyncIterator()
                #expect(try await nextEvent(&events, of: subscription) == .message(Array("hello \(round)".utf8)))
            }
        }
    }

    @Test func readersOfOneChannelShareOneSubscription() async throws {
        try await withRedis { url, _ in
            let configuration = try RedisConfiguration(url: url)
            let connection = RedisConnection(configuration: configuration, logger: testLogger)
            let subscriber = RedisSubscriber(configuration: configuration, logger: testLogger)
            defer {
                connection.shutdown()
                subscriber.shutdown()
            }
            let channel = uniqueName("shared")
            let first = try await subscriber.subscribe(to: channel)
            let second = try await subscriber.subscribe(to: channel)
            #expect(try await subscriberCount(channel, connection) == 1)

            for index in 0..<100 {
                // One Redis subscriber, so each PUBLISH reaches one client.
                #expect(try await connection.execute(RedisCommand("PUBLISH", channel, String(index))) == .integer(1))
            }
            let expected = (0..<100).map { RedisSubscriptionEvent.message(Array(String($0).utf8)) }
            var firstEvents = first.makeAsyncIterator()
            var secondEvents = second.makeAsyncIterator()
            for event in expected {
                #expect(try await nextEvent(&firstEvents, of: first) == event)
                #expect(try await nextEvent(&secondEvents, of: second) == event)
            }

            // The first reader leaves: the channel stays subscribed for the second.
            first.cancel()
            #expect(try await firstEvents.next() == nil)
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await subscriberCount(channel, connection) == 1)
            #expect(try await connection.execute(RedisCommand("PUBLISH", channel, "still here")) == .integer(1))
            #expect(try await nextEvent(&secondEvents, of: second) == .message(Array("still here".utf8)))

            // The last reader leaves: UNSUBSCRIBE.
            second.cancel()
            try await eventually { try await subscriberCount(channel, connection) == 0 }
        }
    }

    @Test func leavingReadersFreeTheirSubscription() async throws {
        try await withRedis { url, _ in
            let configuration = try RedisConfiguration(url: url)
            let connection = RedisConnection(configuration: configuration, logger: testLogger)
            let subscriber = RedisSubscriber(configuration: configuration, logger: testLogger)
            defer {
                connection.shutdown()
                subscriber.shutdown()
            }

            // cancel()
            let cancelled = uniqueName("cancel")
            let subscription = try await subscriber.subscribe(to: cancelled)
            #expect(try await subscriberCount(cancelled, connection) == 1)
            subscription.cancel()
            try await eventually { try await subscriberCount(cancelled, connection) == 0 }

            // Cancelling the task that iterates.
            let taskCancelled = uniqueName("task")
            let reading = try await subscriber.subscribe(to: taskCancelled)
            let received = Locked(0)
            let reader = Task {
                var count = 0
                for try await _ in reading {
                    count += 1
                    received.withLock { $0 = count }
                }
                return count
            }
            #expect(try await connection.execute(RedisCommand("PUBLISH", taskCancelled, "one")) == .integer(1))
            try await eventually { received.withLock { $0 } == 1 }
            reader.cancel()
            #expect(try await reader.value == 1)
            try await eventually { try await subscriberCount(taskCancelled, connection) == 0 }

            // Ending iteration, while the subscription value is still in scope.
            let ended = uniqueName("break")
            let breaking = try await subscriber.subscribe(to: ended)
            #expect(try await connection.execute(RedisCommand("PUBLISH", ended, "stop")) == .integer(1))
            for try await event in breaking {
                #expect(event == .message(Array("stop".utf8)))
                break
            }
            try await eventually { try await subscriberCount(ended, connection) == 0 }
            #expect(breaking.channel == ended)

            // Dropping the subscription without iterating.
            let dropped = uniqueName("drop")
            _ = try await subscriber.subscribe(to: dropped)
            try await eventually { try await subscriberCount(dropped, connection) == 0 }

            // A cancelled reader leaves the others alone, and the channel can be joined again.
            let rejoined = try await subscriber.subscribe(to: cancelled)
            #expect(try await connection.execute(RedisCommand("PUBLISH", cancelled, "again")) == .integer(1))
            var events = rejoined.makeAsyncIterator()
            #expect(try await nextEvent(&events, of: rejoined) == .message(Array("again".utf8)))
        }
    }

    @Test func boundedReaderThatFallsBehindIsUnsubscribed() async throws {
        try await withRedis { url, _ in
            let configuration = try RedisConfiguration(url: url)
            let connection = RedisConnection(configuration: configuration, logger: testLogger)
            let subscriber = RedisSubscriber(configuration: configuration, logger: testLogger)
            defer {
                connection.shutdown()
                subscriber.shutdown()
            }
            let channel = uniqueName("bounded")
            let slow = try await subscriber.subscribe(to: channel, bufferingPolicy: .bounded(maxEvents: 10))
            for index in 0..<20 {
                connection.send(RedisCommand("PUBLISH", channel, String(index)))
            }
            try await eventually { try await subscriberCount(channel, connection) == 0 }
            await #expect {
                for try await _ in slow {}
            } throws: { error in
                (error as? RedisError)?.code == .subscriptionOverflow
            }
        }
    }

    // MARK: Outages

    @Test func survivesARedisRestart() async throws {
        try await withRedisServer { server in
            let logs = LogRecorder()
            let configuration = try RedisConfiguration(url: server.url)
            let connection = RedisConnection(configuration: configuration, logger: logs.logger("connection"))
            let subscriber = RedisSubscriber(configuration: configuration, logger: logs.logger("subscriber"))
            defer {
                connection.shutdown()
                subscriber.shutdown()
            }
            let channel = uniqueName("restart")
            let key = uniqueName("restart-list")
            let subscription = try await subscriber.subscribe(to: channel)
            var events = subscription.makeAsyncIterator()
            #expect(try await connection.execute(RedisCommand("PUBLISH", channel, "before")) == .integer(1))
            #expect(try await nextEvent(&events, of: subscription) == .message(Array("before".utf8)))

            await server.stop()
            // Sent right away, before the connection has noticed: the first ones go into a
            // dead socket and must be sent again.
            for index in 0..<1000 {
                connection.send(RedisCommand("RPUSH", key, "during-\(index)"))
            }
            try await Task.sleep(for: .milliseconds(1500))  // several failed reconnects
            #expect(!connection.isConnected)
            #expect(!subscriber.isConnected)
            try await server.start()

            // Waits for the reconnect; runs after the buffered commands.
            let list = try await connection.execute(RedisCommand("LRANGE", key, "0", "-1"))
            #expect(list.array?.compactMap(\.string) == (0..<1000).map { "during-\($0)" })
            #expect(connection.isConnected)

            #expect(try await nextEvent(&events, of: subscription) == .resubscribed)
            #expect(subscriber.isConnected)
            #expect(try await connection.execute(RedisCommand("PUBLISH", channel, "after")) == .integer(1))
            #expect(try await nextEvent(&events, of: subscription) == .message(Array("after".utf8)))

            // One warning per client for the outage and one info line for the recovery,
            // not one per command or per attempt.
            for label in ["connection", "subscriber"] {
                let records = logs.records.filter { $0.label == label }
                #expect(records.filter { $0.level >= .warning }.count == 1, "\(records)")
                #expect(records.filter { $0.level == .info }.count == 1, "\(records)")
            }
        }
    }

    /// Scripts go by SHA1 (`EVALSHA`), their text sent once per connection (`SCRIPT
    /// LOAD`); a flushed script cache (`SCRIPT FLUSH` under a live connection) and a
    /// restarted Redis (empty) both leave every script command answered, awaited or
    /// fire-and-forget, in a pipeline or alone.
    @Test func scriptsRunByTheirSHAAndSurviveAFlushedCacheAndARestart() async throws {
        try await withRedisServer { server in
            let connection = RedisConnection(configuration: try RedisConfiguration(url: server.url), logger: testLogger)
            defer { connection.shutdown() }
            let key = uniqueName("script")
            let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            func increment(_ by: Int) -> RedisCommand { RedisCommand(script: script, keys: [key], arguments: [String(by)]) }
            /// `calls` of `cmdstat_NAME` in `INFO commandstats` (0 when never called).
            func calls(_ name: String) async throws -> Int {
                let info = try await connection.execute(RedisCommand("INFO", "commandstats")).string ?? ""
                guard let line = info.split(separator: "\r\n").first(where: { $0.hasPrefix("cmdstat_\(name):calls=") }) else { return 0 }
                return Int(line.dropFirst("cmdstat_\(name):calls=".count).prefix { $0.isNumber }) ?? 0
            }

            #expect(try await connection.execute(increment(1)) == .integer(1))
            connection.send(increment(2))
            let pipelined = try await connection.execute([increment(3), RedisCommand("GET", key)])
            #expect(pipelined == [.integer(6), .bulk(Array("6".utf8))])
            #expect(try await calls("evalsha") == 3)
            #expect(try await calls("eval") == 0, "the script's text went once, by SCRIPT LOAD")
            #expect(try await calls("script|load") == 1)

            // The cache flushed under the connection: NOSCRIPT, answered by EVAL.
            _ = try await connection.execute(RedisCommand("SCRIPT", "FLUSH"))
            #expect(try await connection.execute(increment(10)) == .integer(16))
            _ = try await connection.execute(RedisCommand("SCRIPT", "FLUSH"))
            connection.send(increment(20))
            // (A GET here might run before the send's EVAL: a command that met NOSCRIPT runs
            // after those pipelined behind it. Another script command runs after it.)
            #expect(try await connection.execute(increment(0)) == .integer(36))
            _ = try await connection.execute(RedisCommand("SCRIPT", "FLUSH"))
            let afterFlush = try await connection.execute([RedisCommand("GET", key), increment(100)])
            #expect(afterFlush == [.bulk(Array("36".utf8)), .integer(136)])
            #expect(try await connection.execute(increment(0)) == .integer(136))

            // A restarted Redis has neither the key nor the script: loaded again on the new
            // connection before its first use, so no NOSCRIPT at all.
            await server.stop()
            try await server.start()
            // The first request may still go into the dead socket (connectionLost).
            try await eventually { (try? await connection.execute(RedisCommand("PING"))) == .status("PONG") }
            #expect(try await connection.execute(increment(5)) == .integer(5))
            connection.send(increment(1))
            #expect(try await connection.execute(RedisCommand("GET", key)) == .bulk(Array("6".utf8)))
            #expect(try await calls("eval") == 0)
            #expect(try await calls("evalsha") == 2)
        }
    }

    @Test func unreachableRedisFailsRequestsAfterTheTimeout() async throws {
        let logs = LogRecorder()
        var configuration = try RedisConfiguration(url: "redis://127.0.0.1:\(try freePort())")
        configuration.requestTimeout = .milliseconds(300)
        let connection = RedisConnection(configuration: configuration, logger: logs.logger("connection"))
        let subscriber = RedisSubscriber(configuration: configuration, logger: logs.logger("subscriber"))
        let started = ContinuousClock.now
        for _ in 0..<1000 {
            connection.send(RedisCommand("PUBLISH", "nowhere", "x"))
        }
        for _ in 0..<3 {
            await #expect {
                try await connection.execute(RedisCommand("PING"))
            } throws: { error in
                (error as? RedisError)?.code == .unavailable
            }
        }
        await #expect {
            try await subscriber.subscribe(to: "nowhere")
        } throws: { error in
            (error as? RedisError)?.code == .unavailable
        }
        let elapsed = ContinuousClock.now - started
        // Bounded, not hung: generous, since CI's 2 cores may be busy with other tests.
        #expect(elapsed >= .milliseconds(300) && elapsed < .seconds(15))
        #expect(!connection.isConnected)
        for label in ["connection", "subscriber"] {
            #expect(logs.records.filter { $0.label == label && $0.level >= .warning }.count == 1)
        }

        // Shutdown tries to flush for 2 s, then gives up on the unsent commands.
        let shutdownStarted = ContinuousClock.now
        connection.shutdown()
        subscriber.shutdown()
        #expect(ContinuousClock.now - shutdownStarted < .seconds(8), "bounded by the 2 s flush, not hung")
        #expect(connection.droppedCommandCount == 1000)
        await #expect {
            try await connection.execute(RedisCommand("PING"))
        } throws: { error in
            (error as? RedisError)?.code == .shutDown
        }
    }

    @Test func fullBufferDropsTheOldestCommands() async throws {
        let server = try RedisTestServer(port: try freePort())  // not started yet; killed when let go
        var configuration = try RedisConfiguration(url: server.url)
        configuration.maxBufferedCommands = 1000
        let connection = RedisConnection(configuration: configuration, logger: testLogger)
        defer { connection.shutdown() }
        let key = uniqueName("bounded-list")
        for index in 0..<5000 {
            connection.send(RedisCommand("RPUSH", key, String(index)))
        }
        #expect(connection.droppedCommandCount >= 4000)
        try await server.start()
        let list = try #require(try await connection.execute(RedisCommand("LRANGE", key, "0", "-1")).array)
        let values = list.compactMap { $0.string.flatMap(Int.init) }
        // The newest survive, in order.
        #expect(values.count == 5000 - connection.droppedCommandCount)
        #expect(values.count <= 1000 && values.count > 900)
        #expect(values == Array((5000 - values.count)..<5000))
    }

    @Test func aConnectedRedisThatFallsBehindLosesNothingAndAsksForRoom() async throws {
        try await withRedis { url, _ in
            var configuration = try RedisConfiguration(url: url)
            configuration.maxBufferedCommands = 50
            let connection = RedisConnection(configuration: configuration, logger: testLogger)
            defer { connection.shutdown() }
            _ = try await connection.execute(RedisCommand("PING"))
            let key = uniqueName("no-drop")
            var askedForRoom = 0
            for index in 0..<20_000 {
                if !connection.send(RedisCommand("RPUSH", key, String(index))) {
                    askedForRoom += 1
                    await connection.waitForRoom()
                }
            }
            let length = try await connection.execute(RedisCommand("LLEN", key)).int
            #expect(length == 20_000, "commands were dropped while Redis was connected")
            #expect(connection.droppedCommandCount == 0)
            #expect(askedForRoom > 0, "20,000 sends never found a 50-command buffer full")
        }
    }

    @Test func pinnedCommandsSurviveAFullBufferWhileRedisIsAway() async throws {
        let server = try RedisTestServer(port: try freePort())  // not started yet; killed when let go
        var configuration = try RedisConfiguration(url: server.url)
        configuration.maxBufferedCommands = 100
        let connection = RedisConnection(configuration: configuration, logger: testLogger)
        defer { connection.shutdown() }
        let key = uniqueName("pinned")
        var final = RedisCommand("SET", key, "the result")
        final.isPinned = true
        connection.send(final)
        for index in 0..<2000 { connection.send(RedisCommand("RPUSH", key + ":events", String(index))) }
        #expect(connection.droppedCommandCount >= 1800)
        try await server.start()
        let stored = try await connection.execute(RedisCommand("GET", key)).string
        #expect(stored == "the result", "a pinned command was dropped")
    }

    @Test func authenticatesAndSelectsTheDatabase() async throws {
        try await withRedisServer(arguments: ["--requirepass", "hunter2"]) { server in
            let logs = LogRecorder()
            let configuration = try RedisConfiguration(url: "redis://:hunter2@127.0.0.1:\(server.port)/3")
            let connection = RedisConnection(configuration: configuration, logger: logs.logger("connection"))
            let subscriber = RedisSubscriber(configuration: configuration, logger: logs.logger("subscriber"))
            defer {
                connection.shutdown()
                subscriber.shutdown()
            }
            let key = uniqueName("db")
            #expect(try await connection.execute(RedisCommand("SET", key, "three")) == .status("OK"))
            let replies = try await connection.execute([
                RedisCommand("SELECT", "0"), RedisCommand("EXISTS", key),
                RedisCommand("SELECT", "3"), RedisCommand("EXISTS", key),
            ])
            #expect(replies == [.status("OK"), .integer(0), .status("OK"), .integer(1)])

            let channel = uniqueName("auth")
            let subscription = try await subscriber.subscribe(to: channel)
            #expect(try await connection.execute(RedisCommand("PUBLISH", channel, "secret-free")) == .integer(1))
            var events = subscription.makeAsyncIterator()
            #expect(try await nextEvent(&events, of: subscription) == .message(Array("secret-free".utf8)))

            // A wrong password fails requests with its own code, and is never logged.
            var wrong = try RedisConfiguration(url: "redis://:wrong-password@127.0.0.1:\(server.port)")
            wrong.requestTimeout = .milliseconds(300)
            let refused = RedisConnection(configuration: wrong, logger: logs.logger("refused"))
            defer { refused.shutdown() }
            await #expect {
                try await refused.execute(RedisCommand("PING"))
            } throws: { error in
                (error as? RedisError)?.code == .authenticationFailed && !"\(error)".contains("wrong-password")
            }
            #expect(!logs.records.contains { $0.text.contains("hunter2") || $0.text.contains("wrong-password") })
            #expect(logs.records.contains { $0.label == "refused" && $0.level == .warning })
        }
    }
}

// MARK: - Helpers

private let testLogger: Logger = {
    var logger = Logger(label: "sluice.redis.test")
    logger.logLevel = .error
    return logger
}()

private func uniqueName(_ prefix: String) -> String {
    "sluice-test:\(prefix):\(UUID().uuidString)"
}

/// The next event, or `nil` if none arrives within `timeout` (the subscription is then
/// cancelled, so the test fails instead of hanging).
private func nextEvent(
    _ iterator: inout RedisSubscription.AsyncIterator,
    of subscription: RedisSubscription,
    within timeout: Duration = .seconds(10)
) async throws -> RedisSubscriptionEvent? {
    let watchdog = Task {
        try await Task.sleep(for: timeout)
        subscription.cancel()
    }
    defer { watchdog.cancel() }
    return try await iterator.next()
}

/// `PUBSUB NUMSUB channel`: how many clients Redis has subscribed to `channel`.
private func subscriberCount(_ channel: String, _ connection: RedisConnection) async throws -> Int64? {
    try await connection.execute(RedisCommand("PUBSUB", "NUMSUB", channel)).array?.last?.int
}

/// Polls `condition` until it holds, for at most `timeout`.
private func eventually(
    within timeout: Duration = .seconds(5),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("condition still false after \(timeout)", sourceLocation: sourceLocation)
}

/// Runs `body` with the URL of a Redis: `SLUICE_TEST_REDIS_URL` if set, otherwise a
/// `redis-server` started for this call (the server is `nil` when shared).
private func withRedis(_ body: (String, RedisTestServer?) async throws -> Void) async throws {
    if let url = ProcessInfo.processInfo.environment["SLUICE_TEST_REDIS_URL"], !url.isEmpty {
        try await body(url, nil)
    } else {
        try await withRedisServer { server in try await body(server.url, server) }
    }
}

/// Runs `body` with a `redis-server` of its own, stopped however `body` ends.
private func withRedisServer(
    arguments: [String] = [],
    _ body: (RedisTestServer) async throws -> Void
) async throws {
    let server = try RedisTestServer(port: try freePort(), arguments: arguments)
    try await server.start()
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}

/// A `redis-server` on a loopback port, without persistence, that can be stopped and
/// started again on the same port. Let go, it is killed (`ChildProcess` does that).
private final class RedisTestServer {
    let port: Int
    let arguments: [String]
    private var process: ChildProcess?

    init(port: Int, arguments: [String] = []) throws {
        self.port = port
        self.arguments = arguments
    }

    var url: String { "redis://127.0.0.1:\(port)" }

    func start() async throws {
        precondition(process == nil, "already running")
        let process = try await ChildProcess(name: "redis-server", path: "/usr/bin/env", arguments: [
            "redis-server", "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--loglevel", "warning",
        ] + arguments, logPath: "/dev/null")
        self.process = process
        let deadline = ContinuousClock.now + .seconds(10)
        while !acceptsConnections(port: port) {
            guard process.isRunning, ContinuousClock.now < deadline else {
                await stop()
                throw TestServerError(message: "redis-server did not start on port \(port)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Kills the server (a crash, not a shutdown) and waits until it has exited, and so
    /// closed its sockets.
    func stop() async {
        guard let process else { return }
        self.process = nil
        process.signal(SIGKILL)
        await process.wait()
    }
}

private struct TestServerError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A loopback TCP port nobody listens on (the kernel's choice for a socket bound to port 0).
private func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestServerError(message: "socket() failed") }
    defer { close(fd) }
    var address = loopback(port: 0)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            bind(fd, address, length) == 0 && getsockname(fd, address, &length) == 0
        }
    }
    guard bound else { throw TestServerError(message: "bind() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

private func acceptsConnections(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = loopback(port: port)
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
            connect(fd, address, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

private func loopback(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return address
}

/// Collects log records, to check what the client logs (and does not).
private final class LogRecorder: Sendable {
    struct Record: Sendable, CustomStringConvertible {
        var label: String
        var level: Logger.Level
        var text: String
        var description: String { "[\(level)] \(label): \(text)" }
    }

    private let storage = Mutex<[Record]>([])

    var records: [Record] { storage.withLock { $0 } }

    func logger(_ label: String) -> Logger {
        Logger(label: label) { label in RecordingLogHandler(label: label, recorder: self) }
    }

    fileprivate func append(_ record: Record) {
        storage.withLock { $0.append(record) }
    }
}

private struct RecordingLogHandler: LogHandler {
    let label: String
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let metadata = self.metadata.merging(event.metadata ?? [:]) { $1 }
        recorder.append(.init(label: label, level: event.level, text: "\(event.message) \(metadata)"))
    }
}
