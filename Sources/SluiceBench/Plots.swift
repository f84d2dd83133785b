import Foundation
import SluiceCore
import SluiceSupport

/// The plots a run drew, as paths relative to the report, or why it drew none.
public struct PlotsResult: Sendable, Codable {
    public struct Figure: Sendable, Codable {
        var title: String
        var path: String
    }

    var figures: [Figure]
    var skipped: String?
}

/// PNGs of the curves the figures table can only sample: first-token overhead against
/// concurrent streams, and worker memory against streams in flight. matplotlib draws
/// them, installed into `.deps/plot` on first use like the peer, from a JSON file of the
/// run's figures; the report links them from `docs/bench/` beside it.
enum Plots {
    static let folder = "docs/bench"

    static func draw(
        report: BenchReport, options: Bench.Options, tools: BenchTools, children: ChildProcessGroup,
        step: @Sendable (String) -> Void
    ) async throws -> PlotsResult? {
        let input = Input(report)
        guard !input.files.isEmpty else { return nil }
        func skipped(_ why: String) -> PlotsResult {
            step("plots skipped: \(why)")
            return PlotsResult(figures: [], skipped: why)
        }
        if options.quick { return skipped("not drawn in quick mode (it never installs matplotlib)") }
        guard let python = tools.python else { return skipped("python3 not found") }
        let target = options.depsDir.appendingPathComponent("plot")
        do {
            try await Pip.ensure(
                "matplotlib", into: target, marker: "matplotlib/__init__.py", timeout: .seconds(300),
                python: python, children: children, step: { step("plots: \($0)") })
        } catch let error as BenchError {
            return skipped(error.message)
        }

        let fm = FileManager.default
        let outputDir = URL(fileURLWithPath: options.output).deletingLastPathComponent().appendingPathComponent(folder)
        try fm.createDirectory(at: outputDir, withIntermediateDirectories: true)
        // A stale PNG from an earlier run must not pass for this run's.
        for file in input.files { try? fm.removeItem(at: outputDir.appendingPathComponent(file)) }
        let scriptPath = options.runDir.appendingPathComponent("plot.py").path
        let dataPath = options.runDir.appendingPathComponent("plot.json").path
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        try JSON.sortedEncoder.encode(input).write(to: URL(fileURLWithPath: dataPath))

        step("plots: drawing \(input.files.joined(separator: ", ")) into \(outputDir.path)")
        // The first import builds matplotlib's font cache: seconds, not minutes.
        let finished = try await children.run("plot", "/usr/bin/env", [
            "PYTHONPATH=\(target.path)", "MPLBACKEND=Agg",
            "MPLCONFIGDIR=\(options.runDir.appendingPathComponent("matplotlib").path)",
            python, scriptPath, dataPath, outputDir.path,
        ], timeout: .seconds(120))
        guard finished else {
            return skipped("the plotting script did not finish in 120 s; see \(children.logPath("plot"))")
        }
        let missing = input.files.filter { !fm.fileExists(atPath: outputDir.appendingPathComponent($0).path) }
        guard missing.isEmpty else {
            return skipped("the plotting script did not write \(missing.joined(separator: ", ")); see \(children.logPath("plot"))")
        }
        return PlotsResult(figures: input.figures.map { .init(title: $0.title, path: folder + "/" + $0.file) }, skipped: nil)
    }

    /// What the script draws: one entry per plot the run has figures for.
    struct Input: Encodable {
        struct Target: Encodable {
            /// In the plot's y unit.
            var value: Double
            var label: String
        }

        struct Curve: Encodable {
            var name: String
            var points: [FirstTokenResult]
        }

        struct FirstToken: Encodable {
            var file = "first-token-vs-concurrency.png"
            var title = "First-token overhead vs concurrent streams"
            var subtitle: String
            var curves: [Curve]
            /// In milliseconds.
            var targets: [Target]
        }

        struct Memory: Encodable {
            var file = "worker-rss-vs-streams.png"
            var title = "Worker RSS vs streams in flight"
            var subtitle: String
            var samples: [MemorySample]
            /// In MiB.
            var targets: [Target]
        }

        var firstToken: FirstToken?
        var memory: Memory?

        enum CodingKeys: String, CodingKey {
            case firstToken = "first_token"
            case memory
        }

        init(_ report: BenchReport) {
            let curves = [
                Curve(name: "Sluice", points: report.firstToken),
                Curve(name: [report.peer?.name, report.peer?.version].compactMap { $0 }.joined(separator: " "),
                      points: report.peer?.firstToken ?? []),
            ].filter { !$0.points.isEmpty }
            if curves.contains(where: { $0.points.count > 1 }) {
                let path = (report.firstToken.first ?? report.peer?.firstToken.first)?.path ?? ""
                firstToken = FirstToken(
                    subtitle: "provider's first content chunk written → reader has it; \(path); \(report.machine.cpus) CPUs",
                    curves: curves,
                    targets: [
                        Target(value: BenchReport.firstTokenP50TargetMs, label: "target: p50 < \(fmt(BenchReport.firstTokenP50TargetMs, 0)) ms at 1,000 streams"),
                        Target(value: BenchReport.firstTokenP99TargetMs, label: "target: p99 < \(fmt(BenchReport.firstTokenP99TargetMs, 0)) ms at 1,000 streams"),
                    ])
            }
            if let c = report.concurrency, !c.memory.isEmpty {
                memory = Memory(
                    subtitle: "\(c.jobs) jobs × \(c.chunksPerJob) chunks, one every \(c.paceMs) ms; VmRSS sampled every 50 ms; \(report.machine.cpus) CPUs",
                    samples: c.memory,
                    targets: [Target(value: BenchReport.workerRSSTargetMiB,
                                     label: "target: < \(fmt(BenchReport.workerRSSTargetMiB, 0)) MiB at 10,000 streams")])
            }
        }

        var figures: [(title: String, file: String)] {
            [firstToken.map { ($0.title, $0.file) }, memory.map { ($0.title, $0.file) }].compactMap { $0 }
        }

        var files: [String] { figures.map(\.file) }
    }

    /// Reads `argv[1]` (the ``Input`` JSON) and writes each plot into the folder `argv[2]`.
    static let script = #"""
        """Draws sluice bench's plots: python3 plot.py INPUT.json OUTPUT_DIR. Written by sluice bench."""
        import json
        import os
        import sys

        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

        CURVE_COLORS = ["tab:blue", "tab:orange", "tab:purple"]
        TARGET_COLORS = ["tab:green", "tab:red"]
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        thousands = FuncFormatter(lambda value, _: f"{value:,.0f}")


        def figure(plot):
            fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
            fig.suptitle(plot["title"], fontsize=13, fontweight="bold")
            ax.set_title(plot["subtitle"], fontsize=9, color="dimgray")
            ax.grid(True, alpha=0.3)
            return fig, ax


        def targets(ax, plot):
            for color, target in zip(TARGET_COLORS, plot["targets"]):
                ax.axhline(target["value"], linestyle="--", linewidth=1.2, color=color, label=target["label"])


        def first_token(plot, path):
            fig, ax = figure(plot)
            levels = set()
            for color, curve in zip(CURVE_COLORS, plot["curves"]):
                points = sorted(curve["points"], key=lambda p: p["streams"])
                for key, style, marker in (("p50_ms", "-", "o"), ("p99_ms", ":", "s")):
                    measured = [(p["streams"], p["latency"][key]) for p in points if p["latency"].get(key) is not None]
                    if not measured:
                        continue
                    xs, ys = zip(*measured)
                    levels.update(xs)
                    ax.plot(xs, ys, linestyle=style, marker=marker, color=color, label=f"{curve['name']} {key[:3]}")
            targets(ax, plot)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(FixedLocator(sorted(levels)))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(plain)
            ax.yaxis.set_major_formatter(plain)
            # 2 and 5 between the decades, so a point's value can be read off the axis.
            ax.yaxis.set_minor_locator(LogLocator(subs=(2, 5)))
            ax.yaxis.set_minor_formatter(plain)
            ax.tick_params(axis="y", which="minor", labelsize=8)
            ax.grid(True, which="minor", axis="y", alpha=0.15)
            ax.set_xlabel("concurrent streams (log scale)")
            ax.set_ylabel("first-token overhead, ms (log scale)")
            # Outside the axes: the peer's curves can run anywhere up the plot.
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
            fig.savefig(path, dpi=120)


        def memory(plot, path):
            fig, ax = figure(plot)
            samples = plot["samples"]
            xs = [s["in_flight"] for s in samples]
            ys = [s["rss_bytes"] / 2**20 for s in samples]
            ax.plot(xs, ys, color="lightgray", linewidth=0.8, zorder=1)
            points = ax.scatter(xs, ys, c=[s["t_s"] for s in samples], cmap="viridis", s=12, zorder=2, label="worker VmRSS")
            fig.colorbar(points, ax=ax, label="seconds since the jobs were produced")
            targets(ax, plot)
            top = max(ys + [t["value"] for t in plot["targets"]])
            ax.set_ylim(0, top * 1.08)
            ax.set_xlim(left=0)
            ax.xaxis.set_major_formatter(thousands)
            ax.set_xlabel("streams in flight (open at the provider)")
            ax.set_ylabel("worker RSS, MiB")
            ax.legend(fontsize=8, loc="lower right")
            fig.savefig(path, dpi=120)


        data = json.load(open(sys.argv[1]))
        for key, draw in (("first_token", first_token), ("memory", memory)):
            if key in data:
                draw(data[key], os.path.join(sys.argv[2], data[key]["file"]))
        """#
}
