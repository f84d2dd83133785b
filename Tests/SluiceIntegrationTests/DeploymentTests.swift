import Foundation
import SluiceCore
import Testing
import Yams

/// docker/: no Docker engine runs here, so what can be checked without one is: the
/// files parse, everything they reference exists, every subcommand and flag the compose
/// file passes to `sluice` is one the binary accepts, the config parses, and the pieces
/// agree with each other (ports, host names, health checks, dependencies).
@Suite struct DeploymentTests {
    static let root = TestPaths.packageRoot
    static let docker = root.appendingPathComponent("docker")

    func compose() throws -> [String: Any] {
        let text = try String(contentsOf: Self.docker.appendingPathComponent("compose.yaml"), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any], "compose.yaml is not a YAML mapping")
    }

    func services() throws -> [String: [String: Any]] {
        let all = try #require(try compose()["services"] as? [String: Any])
        return try all.mapValues { try #require($0 as? [String: Any]) }
    }

    func command(_ service: [String: Any]) -> [String] {
        (service["command"] as? [Any])?.map { "\($0)" } ?? []
    }

    /// `--name value` or `--name=value` in a command.
    func option(_ name: String, in command: [String]) -> String? {
        for (i, arg) in command.enumerated() {
            if arg == name, i + 1 < command.count { return command[i + 1] }
            if arg.hasPrefix(name + "=") { return String(arg.dropFirst(name.count + 1)) }
        }
        return nil
    }

    func port(ofListen address: String) -> Int? {
        address.split(separator: ":").last.flatMap { Int($0) }
    }

    /// The services that run the Sluice image.
    func sluiceServices() throws -> [String: [String: Any]] {
        try services().filter { _, s in s["build"] != nil || (s["image"] as? String)?.hasPrefix("sluice") == true }
    }

    /// Runs `sluice ARGS` and returns its exit code and everything it printed.
    func sluice(_ arguments: [String]) async throws -> (Int32?, String) {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-help-\(UUID().uuidString.prefix(8)).log")
        defer { try? FileManager.default.removeItem(at: log) }
        let process = try await TestProcess(try TestPaths.sluiceBinary(), arguments, log: log.path)
        let code = await process.wait(timeout: .seconds(30))
        return (code, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    @Test func composeHasTheWholeStackWithHealthChecksAndOrderedStart() throws {
        let services = try services()
        for name in ["kafka", "redis", "topics", "worker", "gateway", "mock-provider"] {
            #expect(services[name] != nil, "compose.yaml has no \(name) service")
        }
        let kafka = try #require(services["kafka"])
        #expect((kafka["image"] as? String)?.hasPrefix("apache/kafka:") == true, "the official apache/kafka image")
        let kafkaEnv = try #require(kafka["environment"] as? [String: Any])
        #expect("\(kafkaEnv["KAFKA_PROCESS_ROLES"] ?? "")".contains("controller"), "KRaft: the broker is its own controller")
        #expect(kafkaEnv.keys.allSatisfy { !$0.contains("ZOOKEEPER") })

        // Health checks where the brief asks for them, pointing at the right port.
        for name in ["kafka", "redis", "gateway", "mock-provider", "worker"] {
            let check = try #require(services[name]?["healthcheck"] as? [String: Any], "\(name) has no healthcheck")
            #expect(check["test"] != nil)
        }
        for (name, flag) in [("gateway", "--listen"), ("mock-provider", "--listen"), ("worker", "--metrics-listen")] {
            let service = try #require(services[name])
            let listen = try #require(option(flag, in: command(service)), "\(name) gives \(flag)")
            let test = ((service["healthcheck"] as? [String: Any])?["test"] as? [Any])?.map { "\($0)" }.joined(separator: " ") ?? ""
            #expect(test.contains("/healthz"), "\(name) is checked on /healthz: \(test)")
            #expect(test.contains(":\(port(ofListen: listen) ?? -1)/"), "\(name)'s check uses the port it listens on: \(test)")
        }

        // depends_on: targets exist, and their conditions can be met.
        for (name, service) in services {
            guard let deps = service["depends_on"] else { continue }
            let conditions: [String: String]
            if let list = deps as? [String] {
                conditions = Dictionary(uniqueKeysWithValues: list.map { ($0, "service_started") })
            } else {
                let map = try #require(deps as? [String: Any])
                conditions = map.mapValues { (($0 as? [String: Any])?["condition"] as? String) ?? "service_started" }
            }
            for (dep, condition) in conditions {
                let target = try #require(services[dep], "\(name) depends on \(dep), which is not a service")
                switch condition {
                case "service_healthy":
                    #expect(target["healthcheck"] != nil, "\(name) waits for \(dep) to be healthy, but \(dep) has no healthcheck")
                case "service_completed_successfully":
                    #expect("\(target["restart"] ?? "no")" == "no", "\(dep) must run once for \(name) to wait for its completion")
                case "service_started": break
                default: Issue.record("\(name): unknown depends_on condition \(condition)")
                }
            }
        }
        let worker = try #require(services["worker"])
        #expect(((worker["deploy"] as? [String: Any])?["replicas"] as? Int) == 3, "three workers")
        #expect(worker["container_name"] == nil, "replicas cannot share a container name")
        let workerDeps = try #require(worker["depends_on"] as? [String: Any])
        #expect(((workerDeps["topics"] as? [String: Any])?["condition"] as? String) == "service_completed_successfully")
        #expect(command(try #require(services["topics"])).first == "topics")
    }

    @Test func everyFileTheComposeFileAndTheDockerfileNameExists() throws {
        let fm = FileManager.default
        for (name, service) in try services() {
            if let build = service["build"] as? [String: Any] {
                let context = Self.docker.appendingPathComponent(build["context"] as? String ?? ".").standardizedFileURL
                #expect(fm.fileExists(atPath: context.path), "\(name): build context \(context.path)")
                let dockerfile = context.appendingPathComponent(build["dockerfile"] as? String ?? "Dockerfile")
                #expect(fm.fileExists(atPath: dockerfile.path), "\(name): \(dockerfile.path)")
            }
            for volume in (service["volumes"] as? [Any]) ?? [] {
                let source = "\(volume)".split(separator: ":").first.map(String.init) ?? ""
                guard source.hasPrefix(".") || source.hasPrefix("/") else { continue }  // a named volume
                let path = Self.docker.appendingPathComponent(source).standardizedFileURL.path
                #expect(fm.fileExists(atPath: path), "\(name) mounts \(source), which does not exist")
            }
        }

        // The Dockerfile: every COPY source (from the build context, the repository root)
        // exists; the builder is the official Swift image on Debian; the binary is built
        // with the Swift runtime linked in; the runtime runs as a user, `sluice` first.
        let dockerfile = try String(contentsOf: Self.docker.appendingPathComponent("Dockerfile"), encoding: .utf8)
        let instructions = Self.instructions(dockerfile)
        var copied = 0
        for (keyword, args) in instructions where keyword == "COPY" || keyword == "ADD" {
            let parts = args.split(separator: " ").map(String.init)
            guard !parts.contains(where: { $0.hasPrefix("--from=") }) else { continue }
            for source in parts.filter({ !$0.hasPrefix("--") }).dropLast() {
                copied += 1
                #expect(fm.fileExists(atPath: Self.root.appendingPathComponent(source).path), "Dockerfile copies \(source), which does not exist")
            }
        }
        #expect(copied >= 3)
        let froms = instructions.filter { $0.0 == "FROM" }.map(\.1)
        #expect(froms.count >= 2, "a multi-stage build")
        #expect(froms.first?.hasPrefix("swift:${SWIFT_VERSION}-${DEBIAN_RELEASE}") == true, "\(froms)")
        #expect(dockerfile.contains("ARG SWIFT_VERSION=6."), "a Swift 6 toolchain")
        #expect(dockerfile.contains("ARG DEBIAN_RELEASE=bookworm"))
        #expect(dockerfile.contains("--static-swift-stdlib"))
        #expect(dockerfile.contains("libhiredis-dev") && dockerfile.contains("libcurl4-openssl-dev"))
        #expect(dockerfile.contains("RDKAFKA_MIN_VERSION=2.10"), "librdkafka >= 2.10 (older 2.x crash when a broker comes back empty), checked after the build")
        let lastStage = instructions.suffix(from: instructions.lastIndex { $0.0 == "FROM" }!)
        let user = try #require(lastStage.last { $0.0 == "USER" }?.1, "the runtime stage sets a USER")
        #expect(!["root", "0"].contains(user.split(separator: ":").first.map(String.init) ?? ""), "not root: \(user)")
        #expect(lastStage.contains { $0.0 == "ENTRYPOINT" && $0.1.replacingOccurrences(of: " ", with: "") == #"["sluice"]"# })
        #expect(!lastStage.contains { $0.0 == "RUN" && $0.1.contains("swift build") }, "no toolchain in the runtime image")

        let ignore = try String(contentsOf: Self.docker.appendingPathComponent("Dockerfile.dockerignore"), encoding: .utf8)
        for entry in [".build", ".deps", ".git"] {
            #expect(ignore.split(separator: "\n").contains { $0 == entry }, "the build context leaves out \(entry)")
        }
    }

    @Test func sluiceAcceptsEverySubcommandAndFlagTheComposeFilePasses() async throws {
        var checked = 0
        for (name, service) in try sluiceServices() {
            let args = command(service)
            let subcommand = try #require(args.first, "\(name) gives no command")
            let (code, help) = try await sluice([subcommand, "--help"])
            #expect(code == 0, "`sluice \(subcommand) --help` exited \(String(describing: code)):\n\(help)")
            for flag in args.dropFirst() where flag.hasPrefix("--") {
                let bare = flag.split(separator: "=").first.map(String.init) ?? flag
                #expect(help.contains(bare + " ") || help.contains(bare + "\n") || help.contains(bare + "="),
                        "`sluice \(subcommand)` has no \(bare) (service \(name)); its help:\n\(help)")
                checked += 1
            }
            if let partitions = option("--partitions", in: args) { #expect(Int(partitions) != nil) }
        }
        #expect(checked >= 6)
    }

    @Test func theConfigTheServicesMountParsesAndAgreesWithTheCompose() throws {
        let services = try services()
        var configPaths = Set<String>()
        for (name, service) in try sluiceServices() {
            // Each Sluice service that reads the config reads the file it mounts (the mock
            // provider reads none).
            let mounts = ((service["volumes"] as? [Any]) ?? []).map { "\($0)".split(separator: ":").map(String.init) }
            guard let path = option("--config", in: command(service)) else {
                #expect(command(service).first == "mock-provider", "\(name) passes no --config")
                continue
            }
            let mount = try #require(mounts.first { $0.count >= 2 && $0[1] == path }, "\(name) reads \(path) but mounts nothing there")
            configPaths.insert(Self.docker.appendingPathComponent(mount[0]).standardizedFileURL.path)
        }
        #expect(configPaths.count == 1)
        let configPath = try #require(configPaths.first)
        let text = try String(contentsOfFile: configPath, encoding: .utf8)
        let config = try SluiceConfig.parse(yaml: text, environment: [:])

        // Host names and ports are the compose services'.
        let kafkaEnv = try #require(services["kafka"]?["environment"] as? [String: Any])
        #expect("\(kafkaEnv["KAFKA_ADVERTISED_LISTENERS"] ?? "")".contains("//\(config.kafka.brokers)"),
                "kafka.brokers \(config.kafka.brokers) is a listener the broker advertises")
        #expect(config.redis.url.hasPrefix("redis://redis:"))
        let mock = try #require(config.provider(named: "mock"))
        let mockService = try #require(services["mock-provider"])
        let mockListen = try #require(option("--listen", in: command(mockService)))
        #expect(mock.baseURL == "http://mock-provider:\(port(ofListen: mockListen) ?? -1)/v1")
        #expect(try config.resolve(provider: nil, model: "default").0.name == "mock", "the demo model runs on the mock")

        // Every provider key the config names reaches the workers.
        let workerEnv = try #require(services["worker"]?["environment"] as? [String: Any])
        for p in config.providers {
            if let env = p.apiKeyEnv { #expect(workerEnv[env] != nil, "the workers get \(env) for provider \(p.name)") }
        }
        // The gateway's key variable reaches the gateway.
        let gatewayEnv = try #require(services["gateway"]?["environment"] as? [String: Any])
        for key in config.gateway.apiKeys { if let env = key.keyEnv { #expect(gatewayEnv[env] != nil) } }
        if let env = config.gateway.adminKeyEnv { #expect(gatewayEnv[env] != nil, "the gateway gets its admin key \(env)") }
        if let env = config.kafka.jobKeyEnv {
            #expect(gatewayEnv[env] != nil && workerEnv[env] != nil, "the gateway and the workers share the job key \(env)")
        }

        // The image puts the prompts where the config looks for them.
        let dockerfile = try String(contentsOf: Self.docker.appendingPathComponent("Dockerfile"), encoding: .utf8)
        #expect(dockerfile.contains("COPY prompts \(config.promptsDir)"), "prompts_dir \(config.promptsDir) is in the image")
        #expect(config.worker.drainSeconds < 40, "compose's stop_grace_period (40 s) outlasts worker.drain_s")
    }

    /// The Dockerfile's instructions, continuation lines joined, comments dropped.
    static func instructions(_ text: String) -> [(String, String)] {
        var out: [(String, String)] = []
        var current = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") { continue }
            if line.hasSuffix("\\") {
                current += line.dropLast() + " "
                continue
            }
            current += line
            let trimmed = current.trimmingCharacters(in: .whitespaces)
            current = ""
            guard !trimmed.isEmpty else { continue }
            let keyword = trimmed.prefix { !$0.isWhitespace }
            let args = trimmed.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
            out.append((keyword.uppercased(), args))
        }
        return out
    }
}
