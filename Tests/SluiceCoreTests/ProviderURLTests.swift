import SluiceCore
import SluiceHTTPClient
import SluiceProviders
import Testing

/// Values from a job that become part of a provider URL (an Azure deployment, a Gemini
/// model) cannot leave their path segment: no other endpoint of the provider can be
/// reached with the operator's key.
struct ProviderURLTests {
    static func call(_ kind: SluiceConfig.Provider.Kind, base: String, model: String) -> ProviderCall {
        ProviderCall(provider: .init(name: kind.rawValue, kind: kind, baseURL: base), model: model,
                     messages: [["role": "user", "content": "hi"]], parameters: [:], stream: true, apiKey: Secret("k"))
    }

    static let escapes = [
        "x/../../fine_tuning/jobs?api-version=1#", "..", ".", "a/b", "a?b=c", "a#frag", "a%2F..%2Fb", "a\\..\\b", "a\nb", "",
    ]

    @Test func anAzureDeploymentStaysInItsSegment() throws {
        for model in Self.escapes {
            #expect(throws: SluiceError.self, "\(model)") {
                try OpenAIWireFormat(azure: true).makeRequest(Self.call(.azure, base: "https://r.openai.azure.com", model: model))
            }
        }
        let fine = try OpenAIWireFormat(azure: true).makeRequest(Self.call(.azure, base: "https://r.openai.azure.com", model: "gpt-4o.mini_2"))
        #expect(fine.url == "https://r.openai.azure.com/openai/deployments/gpt-4o.mini_2/chat/completions?api-version=2024-10-21")
        // Anything else outside letters, digits and -._~=, is percent-encoded.
        let spaced = try OpenAIWireFormat(azure: true).makeRequest(Self.call(.azure, base: "https://r.openai.azure.com", model: "my deploy:é"))
        #expect(spaced.url == "https://r.openai.azure.com/openai/deployments/my%20deploy%3A%C3%A9/chat/completions?api-version=2024-10-21")
    }

    @Test func aGeminiModelStaysInItsSegment() throws {
        for model in Self.escapes + ["models/../x", "models/.."] {
            #expect(throws: SluiceError.self, "\(model)") {
                try GeminiWireFormat().makeRequest(Self.call(.gemini, base: "https://g.example", model: model))
            }
        }
        let fine = try GeminiWireFormat().makeRequest(Self.call(.gemini, base: "https://g.example", model: "models/gemini-2.0-flash"))
        #expect(fine.url == "https://g.example/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse")
        // A colon would pick another method (`x:countTokens`): it is encoded.
        let colon = try GeminiWireFormat().makeRequest(Self.call(.gemini, base: "https://g.example", model: "x:countTokens"))
        #expect(colon.url == "https://g.example/v1beta/models/x%3AcountTokens:streamGenerateContent?alt=sse")
    }

    @Test func theErrorNamesTheFieldAndWhatToDo() {
        do {
            _ = try OpenAIWireFormat(azure: true).makeRequest(Self.call(.azure, base: "https://r", model: "a/../b"))
            Issue.record("no error")
        } catch let error as SluiceError {
            #expect(error.code == .invalidRequest)
            #expect(error.message.contains("\"a/../b\""))
            #expect(error.message.contains("deployment"))
        } catch {
            Issue.record("\(error)")
        }
    }
}

/// A provider's `ca_file` reaches every request made for it, and is checked at load.
struct ProviderCAFileTests {
    @Test func theCAFileIsReadAndGoesOnEveryWireFormatsRequest() throws {
        let c = try SluiceConfig.parse(yaml: """
            providers:
              - {name: private, kind: openai-compatible, base_url: "https://llm.internal/v1", ca_file: /etc/sluice/ca.pem}
              - {name: public, kind: openai, base_url: "https://api.openai.com/v1"}
            models: {}
            """)
        #expect(c.providers[0].caFile == "/etc/sluice/ca.pem")
        #expect(c.providers[1].caFile == nil)

        var provider = c.providers[0]
        let formats: [(SluiceConfig.Provider.Kind, any WireFormat)] = [
            (.openaiCompatible, OpenAIWireFormat(azure: false)), (.azure, OpenAIWireFormat(azure: true)),
            (.anthropic, AnthropicWireFormat()), (.gemini, GeminiWireFormat()),
        ]
        for (kind, format) in formats {
            provider.kind = kind
            let call = ProviderCall(provider: provider, model: "m", messages: [["role": "user", "content": "hi"]], parameters: [:],
                                    stream: true, apiKey: Secret("k"))
            #expect(try format.makeRequest(call).caFile == "/etc/sluice/ca.pem", "\(kind)")
        }
        let publicCall = ProviderURLTests.call(.openai, base: c.providers[1].baseURL, model: "m")
        #expect(try OpenAIWireFormat(azure: false).makeRequest(publicCall).caFile == nil)

        var empty = SluiceConfig()
        empty.providers = [.init(name: "p", kind: .mock, baseURL: "https://x", caFile: "")]
        empty.models = [:]
        #expect {
            try empty.validate()
        } throws: { error in
            (error as? SluiceError)?.message.contains("providers.p.ca_file") == true
        }
    }
}
