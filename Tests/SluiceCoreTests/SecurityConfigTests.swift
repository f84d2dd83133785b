import SluiceCore
import Testing

/// The configuration's security defaults and checks.
struct SecurityConfigTests {
    @Test func theDefaultsExposeNoMockProvider() throws {
        #expect(!SluiceConfig().providers.contains { $0.kind == .mock })
        #expect(!(try SluiceConfig.parse(yaml: "")).providers.contains { $0.kind == .mock })
    }

    @Test func keysCarryProviderAndModelAllowlists() throws {
        let config = try SluiceConfig.parse(yaml: """
            gateway:
              api_keys:
                - { key_env: K_A, tenant: a, providers: [openai], models: [default, openai/gpt-4o] }
                - { key_env: K_B, tenant: b }
            """)
        #expect(config.gateway.apiKeys[0].providers == ["openai"])
        #expect(config.gateway.apiKeys[0].models == ["default", "openai/gpt-4o"])
        #expect(config.gateway.apiKeys[1].providers == nil)
    }

    @Test func anAllowlistMustNameConfiguredProvidersAndAgreeAcrossATenantsKeys() {
        #expect(throws: SluiceError.self) {
            try SluiceConfig.parse(yaml: "gateway: { api_keys: [{ key_env: K, tenant: a, providers: [nope] }] }")
        }
        #expect(throws: SluiceError.self) {
            try SluiceConfig.parse(yaml: """
                gateway:
                  api_keys:
                    - { key_env: K1, tenant: a, providers: [openai] }
                    - { key_env: K2, tenant: a }
                """)
        }
    }
}
