import Crypto
import Foundation
import HummingbirdHTTP2
import SwiftASN1
import X509

/// A self-signed certificate for `127.0.0.1`, made when asked for: the mock provider
/// serves HTTPS with it, and a client trusts it by naming its PEM file as a CA bundle
/// (`providers[].ca_file`). It is its own CA (basic constraints `CA:TRUE`), so the same
/// file is both what the server presents and what the client trusts; a P-256 key, valid
/// from an hour ago for a week.
public struct MockCertificate: Sendable {
    /// The certificate, PEM.
    public let certificatePEM: String
    /// Its private key, PEM (PKCS#8). Only for the server.
    let privateKeyPEM: String

    /// A new key and certificate for the IP address 127.0.0.1 (its subject alternative
    /// name, which clients check the connected address against).
    public static func selfSigned() throws -> MockCertificate {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            CommonName("127.0.0.1")
            OrganizationName("Sluice mock provider")
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now - 3600,
            notValidAfter: now + 7 * 86_400,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return MockCertificate(certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    /// Writes the certificate (not the key) to `path`: the CA file a client trusts.
    public func writeCertificate(to path: String) throws {
        try Data(self.certificatePEM.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// A TLS server configuration presenting this certificate (ALPN is set by the HTTP/2
    /// server builder: `h2`, then `http/1.1`).
    public func serverConfiguration() throws -> TLSConfiguration {
        TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(self.certificatePEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(self.privateKeyPEM.utf8), format: .pem)))
    }
}
