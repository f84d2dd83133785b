import Foundation
import Logging
import SluiceSupport

/// The LiteLLM proxy relaying the same provider's stream: installed into
/// `.deps/litellm` with `pip install --target` when missing, started as a child process
/// with the provider as an OpenAI-compatible model, measured with the same readers.
enum Peer {
    static let name = "LiteLLM proxy"

    static func run(
        options: Bench.Options, sizes: Bench.Sizes, tools: BenchTools, children: ChildProcessGroup,
        scenarios: Scenarios, provider: TimestampingProvider.Running, step: @Sendable (String) -> Void
    ) async throws -> PeerResult {
        func skipped(_ why: String) -> PeerResult {
            step("peer skipped: \(why)")
            return PeerResult(name: name, version: nil, firstToken: [], paced: nil, skipped: why)
        }
        if options.quick { return skipped("not run in quick mode (installing and starting LiteLLM takes minutes)") }
        guard let python = tools.python else { return skipped("python3 not found") }
        let target = options.depsDir.appendingPathComponent("litellm")
        do {
            try await Pip.ensure(
                "litellm[proxy]", into: target, marker: "litellm/proxy/proxy_cli.py", timeout: .seconds(600),
                python: python, children: children, step: { step("peer: \($0)") })
        } catch let error as BenchError {
            return skipped(error.message)
        }
        let version = (try? FileManager.default.contentsOfDirectory(atPath: target.path))?
            .first { $0.hasPrefix("litellm-") && $0.hasSuffix(".dist-info") }
            .map { String($0.dropFirst("litellm-".count).dropLast(".dist-info".count)) }

        let port = LoopbackPort.free()
        let configPath = options.runDir.appendingPathComponent("litellm.yaml").path
        try """
            model_list:
              - model_name: \(BenchStack.model)
                litellm_params:
                  model: openai/bench-1
                  api_base: \(provider.baseURL)
                  api_key: sk-bench
            litellm_settings:
              drop_params: true
              telemetry: false
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        step("peer: starting LiteLLM \(version ?? "") on 127.0.0.1:\(port)")
        // LiteLLM refuses to start without a master key that is not publicly known.
        let masterKey = "sk-bench-" + UUID().uuidString.lowercased()
        return try await children.with("litellm", "/usr/bin/env", [
            "PYTHONPATH=\(target.path)", "LITELLM_MASTER_KEY=\(masterKey)", "LITELLM_LOCAL_MODEL_COST_MAP=True", "LITELLM_LOG=ERROR", "PYTHONUNBUFFERED=1",
            python, "-m", "litellm.proxy.proxy_cli", "--config", configPath, "--host", "127.0.0.1", "--port", "\(port)",
            "--num_workers", "1",
        ]) { proxy in
            do {
                try await children.waitForPort(port, name: "litellm", timeout: .seconds(240))
            } catch {
                step("peer: LiteLLM did not start: \(error)")
                return PeerResult(name: name, version: version, firstToken: [], paced: nil,
                                  skipped: "LiteLLM did not start; see \(children.logPath("litellm"))")
            }
            let base = "http://127.0.0.1:\(port)"
            for i in 0..<3 {
                let script = BenchScript(token: scenarios.token("peerwarm", i), chunks: 2)
                _ = try? await scenarios.client.readStream(
                    PipelineClient.chatCompletionRequest(url: base + "/v1/chat/completions", script: script, bearer: masterKey),
                    counting: "data: ")
            }
            var results: [FirstTokenResult] = []
            for c in sizes.firstTokenLevels where options.runs(.peer) {
                step("peer first-token: \(sizes.firstTokenStreams(at: c)) streams, \(c) at once, through LiteLLM")
                results.append(try await scenarios.firstToken(
                    label: "peer\(c)", path: .peer, baseURL: base, bearer: masterKey, concurrency: c, total: sizes.firstTokenStreams(at: c)))
            }
            var paced: PacedResult?
            if options.runs(.paced) {
                let s = sizes
                step("peer paced: \(s.pacedStreams) streams × \(s.pacedChunks) chunks every \(s.pacedPaceMs) ms through LiteLLM")
                paced = await scenarios.paced(
                    label: "peerpc", path: .peer, baseURL: base, bearer: masterKey, streams: s.pacedStreams, chunks: s.pacedChunks,
                    paceMs: s.pacedPaceMs, grace: .seconds(s.pacedGraceSeconds), processes: ["litellm": proxy.pid, "bench": getpid()])
            }
            return PeerResult(name: name, version: version, firstToken: results, paced: paced, skipped: nil)
        }
    }
}
