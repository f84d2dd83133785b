import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceGateway
import SluiceKafka
import SluiceRedis

struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit",
        abstract: "Produce one job and follow its stream in the terminal.",
        discussion: """
            Give a prompt (`sluice submit "Tell me a joke"`) or a job file (`sluice submit --file job.json`; its shape: \
            docs/contract.md, Jobs, and schemas/job.schema.json). Tokens are printed as they stream, then the metrics. \
            With --json, only the final unified response is printed, as JSON.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The prompt (a single user message).")
    var prompt: String?

    @Option(help: "A JSON job file instead of a prompt.")
    var file: String?

    @Option(help: "The model: an alias from `models`, provider/model, or a model of --provider.")
    var model: String = "default"

    @Option(help: "The provider (a name from `providers`).")
    var provider: String?

    @Flag(help: "Ask the provider for a complete reply instead of a stream.")
    var noStream = false

    @Flag(help: "Print only the final response as JSON.")
    var json = false

    func run() async throws {
        let config = try global.loadConfig()
        let logger = global.makeLogger("sluice.submit")
        var job: Job
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("cannot read the job file \(file)")
            }
            do {
                job = try Job.parse(Array(data))
            } catch let error as SluiceError {
                throw ValidationError("\(file): \(error.message)")
            }
        } else if let prompt {
            job = Job(id: "job-" + UUID().uuidString.lowercased(), provider: provider, model: model,
                      request: .messages([["role": "user", "content": .string(prompt)]]), stream: !noStream)
        } else {
            throw ValidationError("give a prompt or --file JOB.json")
        }
        let status = try await JobTerminal(config: config, logger: logger, jsonOutput: json).run(job)
        if status != .succeeded { throw ExitCode(1) }
    }
}

/// Submits a job straight to Kafka and renders its events in the terminal.
struct JobTerminal: Sendable {
    let config: SluiceConfig
    let logger: Logger
    var jsonOutput = false

    func run(_ job: Job) async throws -> UnifiedResponse.Status {
        let redisConfig = try RedisConfiguration(url: config.redis.url)
        let redis = RedisConnection(configuration: redisConfig, logger: logger)
        let subscriber = RedisSubscriber(configuration: redisConfig, logger: logger)
        let producer = try KafkaProducer(brokers: config.kafka.brokers, properties: config.kafka.producerProperties, logger: logger)
        defer {
            producer.shutdown(timeoutMs: 2_000)
            subscriber.shutdown()
            redis.shutdown()
        }
        let follower = JobEventFollower(redis: redis, subscriber: subscriber, heartbeat: .seconds(3600),
                                        marksFollowed: config.worker.batchChunkEvents == .followed)
        let out = FileHandle.standardOutput
        let err = FileHandle.standardError
        var result: UnifiedResponse?
        var finalStatus = UnifiedResponse.Status.failed
        // The text printed from chunks: the final response completes it when chunks were
        // not seen (a batch-lane job that publishes none, a finished job's replay).
        var printed: [UInt8] = []

        if !jsonOutput { err.write(Data("job \(job.id) submitted\n".utf8)) }
        try await follower.follow(jobID: job.id, afterSeq: 0, onSubscribed: {
            let record = try job.record(keyring: try JobKeyring.from(config.kafka, environment: ProcessInfo.processInfo.environment))
            try await producer.send(topic: config.requestsTopic(for: job.priority), key: job.id, value: try JSON.encode(record))
        }) { item in
            guard case .event(_, let name, let envelope, let dataRange) = item else { return }
            let data = envelope[dataRange]
            switch EventName(rawValue: name) {
            case .chatStarted where !jsonOutput:
                if let v = try? JSON.decode(JSONValue.self, from: data) {
                    let attempt = v["attempt"]?.intValue ?? 1
                    err.write(Data("→ \(v["provider"]?.stringValue ?? "?")/\(v["model"]?.stringValue ?? "?")\(attempt > 1 ? " (attempt \(attempt))" : "")\n".utf8))
                }
            case .chunk where !jsonOutput:
                if let chunk = try? JSON.decode(ChatCompletionChunk.self, from: data),
                   let text = chunk.choices.first?.delta?.content, !text.isEmpty {
                    out.write(Data(text.utf8))
                    printed += text.utf8
                }
            case .chatCompletionResponse:
                result = try? JSON.decode(UnifiedResponse.self, from: data)
                if !jsonOutput, let output = result?.chatOutput?.utf8, output.count > printed.count, output.starts(with: printed) {
                    out.write(Data(output.dropFirst(printed.count)))
                }
            case .chatResponseFailure where !jsonOutput:
                if let v = try? JSON.decode(JSONValue.self, from: data) {
                    err.write(Data("\nerror: \(v["error"]?["message"]?.stringValue ?? "unknown")\n".utf8))
                }
            case .chatFinished:
                if let v = try? JSON.decode(JSONValue.self, from: data),
                   let s = v["status"]?.stringValue.flatMap(UnifiedResponse.Status.init(rawValue:)) {
                    finalStatus = s
                }
            default:
                break
            }
        }
        if result == nil {
            // A failed job has no chat_completion_response event: read the stored result.
            if case .bulk(let bytes)? = try? await redis.execute(RedisCommand("GET", RedisKeys.result(job.id))) {
                result = try? JSON.decode(UnifiedResponse.self, from: bytes)
            }
        }
        if jsonOutput {
            if let result, let bytes = try? result.json() { out.write(Data(bytes) + Data("\n".utf8)) }
        } else {
            out.write(Data("\n".utf8))
            if let m = result?.metrics {
                err.write(Data(JobTerminal.summary(m, status: finalStatus).utf8))
            }
        }
        return finalStatus
    }

    static func summary(_ m: Metrics, status: UnifiedResponse.Status) -> String {
        func f(_ v: Double?, _ digits: Int = 3) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "n/a" }
        return """
            ── \(status.rawValue) ──
              tokens        \(m.inputTokens) in, \(m.outputTokens) out, \(m.totalTokens) total (\(m.usageSource.rawValue))
              cost          \(m.costUSD.map { String(format: "$%.6f", $0) } ?? "n/a (no price for this model)")
              latency       \(f(m.latencyS)) s
              first token   \(f(m.timeToFirstTokenS)) s
              inter-token   \(f(m.interTokenLatencyS, 4)) s
              tokens/s      \(f(m.tokensPerSecond, 1))
              queue wait    \(f(m.queueWaitS)) s
              attempts      \(m.attempts)

            """
    }
}
