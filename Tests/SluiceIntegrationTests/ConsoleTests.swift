import Foundation
import SluiceCore
import SluiceMockProvider
import Testing

/// The live console at `/`, in a real browser: headless Chromium follows a job against
/// the mock provider, and the streamed text must appear with the job's metrics; a link
/// with `submit=1` submits nothing. A screenshot is kept in test-artifacts/console.png.
@Suite(.needsServices, .timeLimit(.minutes(2)))
struct ConsoleTests {
    static func chromium() throws -> String {
        for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        throw TestFailure("chromium is not installed; `make setup` installs it")
    }

    @Test func theConsoleStreamsAJobInABrowserAndALinkSubmitsNothing() async throws {
        let browser = try Self.chromium()
        try await TestStack.with(mock: MockBehavior(chunks: 12, chunkDelay: .milliseconds(30)), gateway: true) { stack in
            let base = try #require(stack.gatewayURL)
            let (status, page) = try await stack.get("/")
            #expect(status == 200)
            #expect(String(decoding: page, as: UTF8.self).contains("EventSource"))
            #expect(!String(decoding: page, as: UTF8.self).contains("://cdn"), "nothing from a CDN")

            let dir = try TestPaths.tempDir("console")
            let flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                         "--user-data-dir=\(dir.appendingPathComponent("profile").path)", "--virtual-time-budget=20000"]

            // A link cannot make the page submit: it only fills the form.
            let linked = dir.appendingPathComponent("linked.html").path
            let link = try await TestProcess(browser, flags + ["--dump-dom", "\(base)/?prompt=Spend%20credits&submit=1"], log: linked)
            #expect(await link.wait(timeout: .seconds(60)) == 0)
            #expect(((try? String(contentsOfFile: linked, encoding: .utf8)) ?? "").contains("id=\"submit-form\""), "the page loaded")
            #expect(try await stack.metric(#"sluice_gateway_jobs_submitted_total{api="jobs"}"#) ?? 0 == 0)

            // A submitted job, followed in the page.
            let accepted = try await stack.call("POST", "/v1/jobs", json: [
                "model": "default", "messages": [["role": "user", "content": "Tell me about rivers"]], "stream": true,
            ])
            let id = try #require(accepted.json["id"]?.stringValue)
            let dom = dir.appendingPathComponent("dom.html").path
            let url = "\(base)/?job=\(id)"
            let dump = try await TestProcess(browser, flags + ["--dump-dom", url], log: dom)
            #expect(await dump.wait(timeout: .seconds(60)) == 0)
            let html = (try? String(contentsOfFile: dom, encoding: .utf8)) ?? ""

            // The job as the worker finished it.
            let results = try await stack.waitForResults(1, timeout: .seconds(30))
            let result = try #require(results.values.first)
            #expect(result.status == .succeeded)
            let output = try #require(result.chatOutput)
            #expect(html.contains("<div id=\"output\">\(output)</div>"), "the streamed text is on the page:\n\(html.suffix(3000))")
            #expect(html.contains("\(result.jobID): done"))
            #expect(html.contains("tokens/s"), "the metrics are shown")

            // Keep a picture of it.
            let artifacts = TestPaths.packageRoot.appendingPathComponent("test-artifacts")
            try FileManager.default.createDirectory(at: artifacts, withIntermediateDirectories: true)
            let shot = artifacts.appendingPathComponent("console.png").path
            let screenshot = try await TestProcess(browser, flags + ["--window-size=1280,720", "--screenshot=\(shot)", url],
                                             log: dir.appendingPathComponent("shot.log").path)
            #expect(await screenshot.wait(timeout: .seconds(60)) == 0)
            #expect(FileManager.default.fileExists(atPath: shot))
        }
    }
}
