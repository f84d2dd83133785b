/// Prices in USD per 1M tokens, keyed `provider/model`. A table of common models ships
/// with Sluice; `pricing` in the config overrides or extends it. A model with no price
/// has `cost_usd: null`, never a guessed number.
public struct PriceTable: Sendable {
    public static let builtIn: [String: SluiceConfig.Price] = [
        "openai/gpt-4o": .init(input: 2.50, output: 10.00),
        "openai/gpt-4o-mini": .init(input: 0.15, output: 0.60),
        "openai/gpt-4.1": .init(input: 2.00, output: 8.00),
        "openai/gpt-4.1-mini": .init(input: 0.40, output: 1.60),
        "openai/gpt-4.1-nano": .init(input: 0.10, output: 0.40),
        "openai/o3-mini": .init(input: 1.10, output: 4.40),
        "openai/gpt-3.5-turbo": .init(input: 0.50, output: 1.50),
        "anthropic/claude-3-5-haiku-latest": .init(input: 0.80, output: 4.00),
        "anthropic/claude-3-5-sonnet-latest": .init(input: 3.00, output: 15.00),
        "anthropic/claude-3-7-sonnet-latest": .init(input: 3.00, output: 15.00),
        "anthropic/claude-sonnet-4-0": .init(input: 3.00, output: 15.00),
        "anthropic/claude-opus-4-0": .init(input: 15.00, output: 75.00),
        "gemini/gemini-1.5-flash": .init(input: 0.075, output: 0.30),
        "gemini/gemini-1.5-pro": .init(input: 1.25, output: 5.00),
        "gemini/gemini-2.0-flash": .init(input: 0.10, output: 0.40),
        "gemini/gemini-2.5-flash": .init(input: 0.30, output: 2.50),
        "gemini/gemini-2.5-pro": .init(input: 1.25, output: 10.00),
    ]

    private let prices: [String: SluiceConfig.Price]

    public init(overrides: [String: SluiceConfig.Price] = [:]) {
        prices = PriceTable.builtIn.merging(overrides, uniquingKeysWith: { _, configured in configured })
    }

    public func price(provider: String, model: String) -> SluiceConfig.Price? {
        prices["\(provider)/\(model)"]
    }

    public func cost(provider: String, model: String, inputTokens: Int, outputTokens: Int) -> Double? {
        guard let p = price(provider: provider, model: model) else { return nil }
        return (Double(inputTokens) * p.input + Double(outputTokens) * p.output) / 1_000_000
    }
}
