import Foundation
import SluiceCore
import Testing

@Suite struct PromptTemplateTests {
    let yaml = """
        provider: openai
        model: gpt-4o-mini
        messages:
          - { role: system, content: "You greet people." }
          - { role: user, content: "Say hello to {{name}} from {{city}}{{#title}}, {{title}}{{/title}}. {{&raw}} {{{raw}}}" }
        parameters: { temperature: 0.2, max_tokens: 64 }
        top_p: 0.9
        """

    @Test func parsesAndRendersWithoutHTMLEscaping() throws {
        let t = try PromptTemplate.parse(id: "welcome", yaml: yaml)
        #expect(t.provider == "openai")
        #expect(t.model == "gpt-4o-mini")
        #expect(t.parameters == ["temperature": 0.2, "max_tokens": 64, "top_p": 0.9])
        let messages = try t.render(["name": "Ada & Bob <3", "city": "London", "raw": "x"])
        #expect(messages[0] == ["role": "system", "content": "You greet people."])
        #expect(messages[1]["content"] == "Say hello to Ada & Bob <3 from London. x x")
        let titled = try t.render(["name": "Ada", "city": "Paris", "title": "Countess", "raw": 1])
        #expect(titled[1]["content"] == "Say hello to Ada from Paris, Countess. 1 1")
    }

    @Test func aMissingVariableIsAnErrorThatNamesIt() throws {
        let t = try PromptTemplate.parse(id: "welcome", yaml: yaml)
        do {
            _ = try t.render(["name": "Ada", "raw": ""])
            Issue.record("rendered without city")
        } catch let e as SluiceError {
            #expect(e.code == .missingVariable)
            #expect(e.message == "missing variable \"city\" in prompt \"welcome\"")
        }
    }

    @Test func brokenTemplatesAndIDs() {
        #expect(throws: SluiceError.self) { try PromptTemplate.parse(id: "x", yaml: "model: m") }
        #expect(throws: SluiceError.self) { try PromptTemplate.parse(id: "x", yaml: "messages: [{role: user}]") }
        #expect(PromptTemplate.isValidID("welcome-v2.1"))
        #expect(!PromptTemplate.isValidID("../etc/passwd"))
        #expect(!PromptTemplate.isValidID(".hidden"))
        #expect(!PromptTemplate.isValidID("a/b"))
    }

    @Test func loadingReadsTheFileAndRefusesUnsafeOrMissingIDs() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-prompts-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try yaml.write(to: dir.appendingPathComponent("welcome.yml"), atomically: true, encoding: .utf8)
        try "model: m".write(to: dir.appendingPathComponent("broken.yaml"), atomically: true, encoding: .utf8)

        #expect(try PromptTemplate.load(id: "welcome", from: dir.path).model == "gpt-4o-mini")
        for id in ["nofile", "../welcome"] {
            do {
                _ = try PromptTemplate.load(id: id, from: dir.path)
                Issue.record("loaded \(id)")
            } catch let e as SluiceError {
                #expect(e.code == .unknownPrompt)
                #expect(!e.message.contains(dir.path), "the directory stays out of client-facing errors: \(e.message)")
            }
        }
        #expect(throws: SluiceError.self) { try PromptTemplate.load(id: "broken", from: dir.path) }
    }

    /// The routing rule the gateway checks and the worker runs by.
    @Test func aSelfRoutingModelOverridesTheTemplatesProviderAndABareOneKeepsIt() throws {
        let t = try PromptTemplate.parse(id: "welcome", yaml: yaml)
        var config = SluiceConfig()
        config.models["fast"] = ModelTarget(provider: "anthropic", model: "claude-x")
        #expect(t.target(provider: nil, model: nil, config: config) == ("openai", "gpt-4o-mini"))
        #expect(t.target(provider: nil, model: "gpt-4o", config: config) == ("openai", "gpt-4o"))
        #expect(t.target(provider: nil, model: "anthropic/claude-x", config: config) == (nil, "anthropic/claude-x"))
        #expect(t.target(provider: nil, model: "fast", config: config) == (nil, "fast"))
        #expect(t.target(provider: "azure", model: "fast", config: config) == ("azure", "fast"))
    }
}
