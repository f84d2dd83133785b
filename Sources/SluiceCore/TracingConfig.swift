import Foundation

extension SluiceConfig {
    /// `tracing`: OpenTelemetry traces of each job, exported over OTLP/HTTP. Off unless
    /// `otlp_endpoint` is set; off, no span is started anywhere (a record's trace
    /// context is still passed on, so that a traced process after this one continues it).
    public struct Tracing: Sendable, Codable, Equatable {
        public enum OTLPProtocol: String, Sendable, Codable {
            case httpProtobuf = "http/protobuf"
            case httpJSON = "http/json"
        }

        /// The collector's OTLP/HTTP base URL (`http://collector:4318`); spans go to
        /// `{otlp_endpoint}/v1/traces`. nil: tracing off.
        public var otlpEndpoint: String?
        public var otlpProtocol = OTLPProtocol.httpProtobuf
        /// The `service.name` of the spans; nil: the command's own
        /// (`sluice-gateway`, `sluice-worker`).
        public var serviceName: String?
        /// The share of new traces recorded, 0 to 1; a trace that arrives with a
        /// `traceparent` follows the caller's decision (its `sampled` flag).
        public var sampleRatio = 1.0

        enum CodingKeys: String, CodingKey {
            case otlpEndpoint = "otlp_endpoint"
            case otlpProtocol = "otlp_protocol"
            case serviceName = "service_name"
            case sampleRatio = "sample_ratio"
        }

        public init() {}

        public init(from decoder: Decoder) throws {
            self.init()
            let c = try decoder.container(keyedBy: CodingKeys.self)
            otlpEndpoint = try c.decodeIfPresent(String.self, forKey: .otlpEndpoint)
            otlpProtocol = try c.decodeIfPresent(OTLPProtocol.self, forKey: .otlpProtocol) ?? otlpProtocol
            serviceName = try c.decodeIfPresent(String.self, forKey: .serviceName)
            sampleRatio = try c.decodeIfPresent(Double.self, forKey: .sampleRatio) ?? sampleRatio
        }

        public var isEnabled: Bool { otlpEndpoint != nil }

        /// Where spans are posted: the endpoint with `/v1/traces` (OTLP/HTTP's path).
        public var tracesURL: String? {
            otlpEndpoint.map { $0.hasSuffix("/") ? $0 + "v1/traces" : $0 + "/v1/traces" }
        }

        func validate() throws {
            if let endpoint = otlpEndpoint {
                guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false,
                      url.query == nil, url.fragment == nil
                else {
                    throw SluiceError(.config, "tracing.otlp_endpoint must be an http:// or https:// URL of an OTLP/HTTP collector, e.g. http://127.0.0.1:4318, got \"\(endpoint)\"")
                }
            }
            guard sampleRatio.isFinite, (0...1).contains(sampleRatio) else {
                throw SluiceError(.config, "tracing.sample_ratio must be from 0 to 1, got \(sampleRatio)")
            }
            if let name = serviceName, name.isEmpty || name.utf8.count > 256 {
                throw SluiceError(.config, "tracing.service_name must be 1 to 256 bytes (leave it out for the command's name)")
            }
        }
    }
}
