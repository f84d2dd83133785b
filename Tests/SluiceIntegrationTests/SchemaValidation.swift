import Foundation
import SluiceCore
import Testing
import SluiceSupport

/// Checks documents against `schemas/` with Python's `jsonschema` (installed by
/// `make setup`): one process for a whole batch.
enum SchemaValidator {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Records an issue for every document that does not validate.
    static func expectValid(_ documents: [(schema: String, document: JSONValue)], sourceLocation: SourceLocation = #_sourceLocation) async throws {
        var input = ""
        for (schema, document) in documents {
            let line = try JSON.encode(["schema": .string(schema), "document": document] as JSONValue)
            input += String(decoding: line, as: UTF8.self) + "\n"
        }
        // Command, not Foundation.Process, whose run() can crash a busy test process.
        let result = try await Command.run(
            ["python3", root.appendingPathComponent("scripts/validate-schemas.py").path, root.appendingPathComponent("schemas").path],
            input: Array(input.utf8), timeout: .seconds(120))
        let report = result.text
        #expect(result.status == 0, "schema check failed:\n\(report)", sourceLocation: sourceLocation)
        #expect(report.contains("\(documents.count) documents checked"), "\(report)", sourceLocation: sourceLocation)
    }

    /// Expects the schema to reject `document`: the validator must run, and report at
    /// least one error for it (a validator that cannot start does not count as a
    /// rejection).
    static func expectRejected(_ document: (schema: String, document: JSONValue), sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let line = try JSON.encode(["schema": .string(document.schema), "document": document.document] as JSONValue)
        let result = try await Command.run(
            ["python3", root.appendingPathComponent("scripts/validate-schemas.py").path, root.appendingPathComponent("schemas").path],
            input: line + Array("\n".utf8), timeout: .seconds(120))
        let report = result.text
        #expect(report.contains("1 documents checked"), "the validator did not run: \(report)", sourceLocation: sourceLocation)
        #expect(result.status == 1 && report.contains("\(document.schema): "), "the \(document.schema) schema accepted \(document.document)", sourceLocation: sourceLocation)
    }
}
