import Foundation
import PropertyBased
import SluiceCore
import Testing

@Suite struct JobValidationTests {
    func parse(_ json: String, key: String? = nil, limits: JobLimits = JobLimits()) throws -> Job {
        try Job.parse(Array(json.utf8), key: key, fallbackID: "requests:0:7", limits: limits)
    }

    /// Each field out of its type or range: an invalid_job error naming the field in its
    /// message and its context, with the job's id, so the worker can answer it.
    @Test(arguments: [
        (#""timeout_s": 1e17"#, "timeout_s", "at most 86400"),
        (#""timeout_s": 1e308"#, "timeout_s", "at most 86400"),
        (#""timeout_s": 0"#, "timeout_s", "greater than 0"),
        (#""timeout_s": "60""#, "timeout_s", "must be a number"),
        (#""temperature": 2.5"#, "temperature", "from 0 to 2"),
        (#""parameters": {"temperature": -0.1}"#, "temperature", "from 0 to 2"),
        (#""top_p": 1.01"#, "top_p", "from 0 to 1"),
        (#""presence_penalty": -3"#, "presence_penalty", "from -2 to 2"),
        (#""frequency_penalty": "high""#, "frequency_penalty", "got a string"),
        (#""max_tokens": 1e300"#, "max_tokens", "an integer from 1 to 2147483647"),
        (#""max_tokens": 2147483648"#, "max_tokens", "an integer"),
        (#""max_completion_tokens": 10.5"#, "max_completion_tokens", "an integer"),
        (#""n": 129"#, "n", "from 1 to 128"),
        (#""n": 0"#, "n", "from 1 to 128"),
        (#""top_logprobs": 21"#, "top_logprobs", "from 0 to 20"),
        (#""seed": -2147483649"#, "seed", "an integer"),
        (#""parameters": {"top_k": -1}"#, "top_k", "an integer"),
        (#""logprobs": 1"#, "logprobs", "a boolean"),
        (#""stop": [1]"#, "stop", "array of strings"),
        (#""tools": {"type": "function"}"#, "tools", "array of objects"),
        (#""logit_bias": {"50256": 101}"#, "logit_bias", "from -100 to 100"),
        (#""metadata": {"a": \#(String(repeating: "[", count: 64))1\#(String(repeating: "]", count: 64))}"#, "metadata", "nests too deeply"),
        (#""session_id": "a\nb""#, "session_id", "control characters"),
        (#""provider": 5"#, "provider", "must be a string"),
        (#""tenant": "\#(String(repeating: "t", count: 257))""#, "tenant", "at most 256"),
        (#""api_key": "sk key""#, "api_key", "printable ASCII"),
        (#""fallbacks": [{"provider": 1, "model": "m"}]"#, "fallbacks", "fallbacks[0].provider must be a string"),
        (#""fallbacks": [{"model": "m"}, {"model": "m"}, {"model": "m"}, {"model": "m"}, {"model": "m"}, {"model": "m"}]"#, "fallbacks", "at most 5"),
        (#""passthrough": "yes""#, "passthrough", "must be a boolean"),
    ])
    func outOfRangeFieldsAreNamed(field: String, expectedField: String, expected: String) throws {
        do {
            _ = try parse(#"{"id": "job-1", "model": "default", "chat_input": "hi", \#(field)}"#)
            Issue.record("accepted \(field)")
        } catch let error as SluiceError {
            #expect(error.code == .invalidJob)
            #expect(error.context["field"] == expectedField)
            #expect(error.message.contains(expected), "\(error.message)")
            #expect(error.message.contains(expectedField), "\(error.message)")
            #expect(error.context["job_id"] == "job-1")
        }
    }

    /// The message fields Sluice reads have their types: a result repeats the messages,
    /// and the API description promises their shape.
    @Test(arguments: [
        (#"{"role": "user", "content": 5}"#, "messages[0].content must be a string, an array of content parts or null"),
        (#"{"role": "tool", "content": "x", "tool_call_id": {}}"#, "messages[0].tool_call_id must be a string"),
        (#"{"role": "user", "content": "x", "name": ["a"]}"#, "messages[0].name must be a string"),
        (#"{"role": "assistant", "tool_calls": [null, null]}"#, "messages[0].tool_calls must be an array of objects"),
    ])
    func mistypedMessageFieldsAreNamed(message: String, expected: String) throws {
        do {
            _ = try parse(#"{"id": "job-1", "model": "default", "messages": [\#(message)]}"#)
            Issue.record("accepted \(message)")
        } catch let error as SluiceError {
            #expect(error.code == .invalidJob)
            #expect(error.context["field"] == "messages")
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test func wellTypedMessageFieldsAndNullsAreAccepted() throws {
        let job = try parse("""
            {"id": "m", "model": "default", "messages": [
              {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": "ada"},
              {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function"}], "tool_call_id": null},
              {"role": "tool", "content": "sunny", "tool_call_id": "c1", "extra": 5}]}
            """)
        guard case .messages(let messages) = job.request else { Issue.record("not a messages job"); return }
        #expect(messages.count == 3)
    }

    @Test func theBoundsThemselvesAreAccepted() throws {
        let job = try parse("""
            {"id": "edge", "model": "default", "messages": [{"role": "user", "content": "x"}], "timeout_s": 86400,
             "temperature": 2, "top_p": 0, "presence_penalty": -2, "frequency_penalty": 2, "max_tokens": 2147483647,
             "n": 128, "seed": -2147483648, "top_logprobs": 20, "stop": ["a", "b"], "logit_bias": {"1": -100},
             "fallbacks": [{"model": "a"}, {"model": "b"}, {"model": "c"}, {"model": "d"}, {"model": "e"}]}
            """)
        #expect(job.timeoutSeconds == 86400)
        #expect(job.parameters["max_tokens"] == .number(2147483647))
        #expect(job.fallbacks.count == 5)
    }

    @Test func maxFallbacksComesFromTheLimits() throws {
        let body = #"{"id": "f", "chat_input": "x", "fallbacks": [{"model": "a"}, {"model": "b"}]}"#
        #expect(throws: SluiceError.self) { try parse(body, limits: JobLimits(maxFallbacks: 1)) }
        #expect(try parse(body, limits: JobLimits(maxFallbacks: 2)).fallbacks.count == 2)
        var config = SluiceConfig()
        config.worker.maxFallbacks = 1
        #expect(JobLimits(config).maxFallbacks == 1)
        #expect(SluiceConfig().worker.maxFallbacks == 5)
        #expect(try SluiceConfig.parse(yaml: "worker:\n  max_fallbacks: 2\n").worker.maxFallbacks == 2)
    }

    @Test(arguments: ["../x", "*", "a b", "a\nb", "", ".", "..", "-x", "é", "a/b", "a?b", String(repeating: "x", count: 129)])
    func unsafeIDsAreRefusedWithoutAJobID(id: String) throws {
        var body = Array(#"{"chat_input": "x", "id": "#.utf8)
        JSON.appendString(id, to: &body)
        body.append(UInt8(ascii: "}"))
        do {
            _ = try Job.parse(body)
            Issue.record("accepted id \(id.debugDescription)")
        } catch let error as SluiceError {
            #expect(error.context["field"] == "id")
            #expect(error.context["job_id"] == nil, "no id to answer: the DLQ")
        }
        #expect(!Job.isValidID(id))
        // A message key is held to the same rule.
        #expect(throws: SluiceError.self) { try Job.parse(Array(#"{"chat_input": "x"}"#.utf8), key: id.isEmpty ? "a b" : id) }
    }

    @Test(arguments: ["a", "job-1", "order_123", "tenant:job.7", "0f8fad5b-d9cb-469f-a165-70867728950e", String(repeating: "x", count: 128)])
    func safeIDsAreAccepted(id: String) throws {
        #expect(Job.isValidID(id))
        #expect(try parse(#"{"id": "\#(id)", "chat_input": "x"}"#).id == id)
    }

    @Test func aJobWithNeitherIDNorKeyIsNamedByItsPlaceInTheLog() throws {
        #expect(try parse(#"{"chat_input": "x"}"#).id == "requests:0:7")
        #expect(try parse(#"{"chat_input": "x"}"#, key: "from-key").id == "from-key")
        #expect(Job.derivedID(topic: "sluice.requests", partition: 3, offset: 42) == "sluice.requests:3:42")
        // Kafka allows topics of 249 characters and a leading '_': still a valid id, still stable.
        let long = String(repeating: "t", count: 249)
        let derived = Job.derivedID(topic: long, partition: 1, offset: Int64.max)
        #expect(Job.isValidID(derived))
        #expect(derived == Job.derivedID(topic: long, partition: 1, offset: Int64.max))
        #expect(derived != Job.derivedID(topic: long + "u", partition: 1, offset: Int64.max))
        #expect(Job.isValidID(Job.derivedID(topic: "__x", partition: 0, offset: 0)))
    }

    @Test func anEmptyAPIKeyIsNoKey() throws {
        #expect(try parse(#"{"chat_input": "x", "api_key": ""}"#).apiKey == nil)
    }

    @Test func theAPIKeyIsNeverEchoed() throws {
        do {
            _ = try parse(#"{"id": "k", "chat_input": "x", "api_key": "sk-SECRET\n"}"#)
            Issue.record("accepted a key with a newline")
        } catch let error as SluiceError {
            #expect(!error.message.contains("SECRET"))
        }
    }

    @Test func jobsBuiltInCodeAreHeldToTheSameRules() {
        let job = Job(id: "j", request: .chatInput("x"), parameters: ["temperature": 3])
        #expect(throws: SluiceError.self) { try job.validate() }
        let deep = (0..<70).reduce(JSONValue.string("x")) { inner, _ in .array([inner]) }
        #expect(throws: SluiceError.self) { try Job(id: "j", request: .passthrough(body: ["a": deep])).validate() }
        #expect(throws: SluiceError.self) { try Job(id: "j", request: .chatInput("x"), timeoutSeconds: .nan).validate() }
        #expect(throws: SluiceError.self) { try Job(id: "j", request: .chatInput("x"), timeoutSeconds: .infinity).validate() }
    }
}

@Suite struct SaturatingTests {
    @Test func doublesBecomeIntegersWithoutTraps() {
        #expect(Int64(saturating: .nan) == 0)
        #expect(Int64(saturating: .infinity) == .max)
        #expect(Int64(saturating: -.infinity) == .min)
        #expect(Int64(saturating: 1e17 * 1000) == .max)
        #expect(Int64(saturating: 9.3e18) == .max)
        #expect(Int64(saturating: -1e300) == .min)
        #expect(Int64(saturating: 3.9) == 3)
        #expect(Int64(saturating: -3.9) == -3)
        #expect(Int32(saturating: 1e10) == .max)
        #expect(UInt8(saturating: -1) == 0)
        #expect(Int(saturating: Double(Int.max)) == .max)
    }

    @Test func sumsSaturate() {
        #expect(Int.max.adding(saturating: 1) == .max)
        #expect(Int.min.adding(saturating: -1) == .min)
        #expect(2.adding(saturating: 3) == 5)
        #expect(Usage(promptTokens: .max, completionTokens: 5).totalTokens == .max)
    }

    @Test func secondsBecomeDurationsWithoutTraps() {
        #expect(Duration.seconds(saturating: .nan) == .zero)
        #expect(Duration.seconds(saturating: -5) == .zero)
        #expect(Duration.seconds(saturating: 1.5) == .milliseconds(1500))
        #expect(Duration.seconds(saturating: 0.0001) == .milliseconds(1))
        #expect(Duration.seconds(saturating: 1e300) == .milliseconds(Int64.max))
        #expect(Duration.seconds(saturating: .infinity) == .milliseconds(Int64.max))
    }
}

/// `Job.parse` driven with arbitrary JSON in every field: it never traps, and it
/// answers either a job whose fields are in range or an `invalid_job` error naming the
/// field (or, for text that is no JSON at all, saying so).
@Suite struct JobParsePropertyTests {
    @Test func anyJSONInAnyFieldGivesAJobInRangeOrANamedError() async {
        var jobs = 0, errors = 0
        await propertyCheck(count: 1_000, input: ArbitraryJob.text) { text in
            do {
                let job = try Job.parse(Array(text.utf8), fallbackID: "requests:0:1")
                jobs += 1
                #expect(Job.isValidID(job.id))
                if let t = job.timeoutSeconds { #expect(t > 0 && t <= 86_400, "\(t)") }
                #expect(job.fallbacks.count <= 5)
                for (key, range) in [("temperature", -0.0...2.0), ("top_p", 0...1), ("presence_penalty", -2...2), ("frequency_penalty", -2...2)] {
                    if let v = job.parameters[key] { #expect(v.doubleValue.map(range.contains) == true, "\(key): \(v)") }
                }
                for key in ["max_tokens", "max_completion_tokens", "n", "seed", "top_k", "top_logprobs", "candidate_count"] {
                    if let v = job.parameters[key] { #expect(v.doubleValue.flatMap { Int32(exactly: $0) } != nil, "\(key): \(v)") }
                }
                // What the worker does with it cannot trap, and it survives the trip through Kafka.
                _ = Duration.seconds(saturating: job.timeoutSeconds ?? 600)
                let again = try Job.parse(job.encoded())
                #expect(again.id == job.id)
                #expect(again.timeoutSeconds == job.timeoutSeconds)
            } catch let error as SluiceError {
                errors += 1
                #expect(error.code == .invalidJob)
                if let field = error.context["field"] {
                    #expect(error.message.contains(field), "\(error.message) does not name \(field)")
                } else {
                    #expect(error.message == "the message is not valid JSON", "\(error.message) names no field")
                }
                if let id = error.context["job_id"] { #expect(Job.isValidID(id)) }
            } catch {
                Issue.record("not a SluiceError: \(error)")
            }
        }
        // Both answers were exercised (a fixed seed runs one case only).
        #expect(jobs + errors > 0)
        if jobs + errors > 100 { #expect(jobs > 50 && errors > 50, "\(jobs) jobs, \(errors) errors") }
    }
}

/// JSON text of a job: a valid one with one to four fields replaced by arbitrary JSON,
/// numbers written as text (so `1e999` and 20-digit integers reach the parser as such).
enum ArbitraryJob {
    static let fields: [String] = [
        "id", "provider", "model", "messages", "chat_input", "prompt_id", "variables", "passthrough", "body", "parameters",
        "stream", "is_stream", "session_id", "tenant", "metadata", "timeout_s", "fallbacks", "api_key",
    ] + Job.hyperparameterKeys.sorted()

    static let numbers = [
        "0", "-0", "1", "-1", "0.5", "2", "2.0000001", "86400", "86400.5", "1e17", "1e308", "-1e308", "1e999", "-1e999",
        "2147483647", "2147483648", "-2147483649", "9223372036854775807", "9223372036854775808", "18446744073709551616",
        "4.9e-324", "1.7976931348623157e308", "128", "129", "100", "-100.5", "3.0", "1E2", "1e-400",
    ]

    static let strings = ["", "NaN", "Infinity", "-Infinity", "1e17", "../x", "a b", "a\u{0}b", "line\nbreak", "\u{7F}", "é", "🦀", "default", "sk-x"]

    static let text = Generator<String, Shrink.None<String>>(run: { rng in job(&rng) })

    static func job<R: RandomNumberGenerator>(_ rng: inout R) -> String {
        var object: [String: String] = ["model": #""default""#, "chat_input": #""hi""#]
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let field = fields.randomElement(using: &rng)!
            if Int.random(in: 0..<8, using: &rng) == 0 {
                object[field] = nil
            } else {
                object[field] = value(&rng, depth: 0)
            }
        }
        return "{" + object.map { key, value in "\"\(key)\":\(value)" }.joined(separator: ",") + "}"
    }

    static func value<R: RandomNumberGenerator>(_ rng: inout R, depth: Int) -> String {
        switch Int.random(in: 0..<(depth < 4 ? 10 : 6), using: &rng) {
        case 0: return ["null", "true", "false"].randomElement(using: &rng)!
        case 1: return numbers.randomElement(using: &rng)!
        case 2:
            let n = Double.random(in: -1...1, using: &rng) * pow(10, Double(Int.random(in: -330...310, using: &rng)))
            return n.isFinite ? "\(n)" : "1e999"
        case 3: return quoted(strings.randomElement(using: &rng)!)
        case 4:
            let scalars = (0..<Int.random(in: 0...300, using: &rng)).compactMap { _ in
                Unicode.Scalar(UInt32.random(in: 0...(Bool.random(using: &rng) ? 0x7F : 0x1FFFF), using: &rng))
            }
            return quoted(String(String.UnicodeScalarView(scalars)))
        case 5: return Int.random(in: -3...3, using: &rng).description
        case 6, 7:
            let items = (0..<Int.random(in: 0...4, using: &rng)).map { _ in value(&rng, depth: depth + 1) }
            return "[" + items.joined(separator: ",") + "]"
        case 8:
            var keys = Set<String>()
            for _ in 0..<Int.random(in: 0...4, using: &rng) {
                keys.insert(Bool.random(using: &rng) ? fields.randomElement(using: &rng)! : ["role", "content", "model", "provider", "type"].randomElement(using: &rng)!)
            }
            return "{" + keys.map { "\"\($0)\":" + value(&rng, depth: depth + 1) }.joined(separator: ",") + "}"
        default:
            // Deep nesting, around the limit and far beyond it.
            let levels = [62, 63, 64, 65, 100, 600].randomElement(using: &rng)!
            let asArrays = Bool.random(using: &rng)
            let inner = value(&rng, depth: 4)
            return asArrays
                ? String(repeating: "[", count: levels) + inner + String(repeating: "]", count: levels)
                : String(repeating: #"{"a":"#, count: levels) + inner + String(repeating: "}", count: levels)
        }
    }

    static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        JSON.appendString(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
