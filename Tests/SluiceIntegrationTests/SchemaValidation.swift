import Foundation
import SluiceCore
import Testing

/// Checks documents against `schemas/` with Python's `jsonschema` (installed by
/// `make setup`): one process for a whole batch.
enum SchemaValidator {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Records an issue for every document that does not validate.
    static func expectValid(_ documents: [(schema: String, document: JSONValue)], sourceLocation: SourceLocation = #_sourceLocation) throws {
        var input = ""
        for (schema, document) in documents {
            let line = try JSON.encode(["schema": .string(schema), "document": document] as JSONValue)
            input += String(decoding: line, as: UTF8.self) + "\n"
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", root.appendingPathComponent("scripts/validate-schemas.py").path,
                             root.appendingPathComponent("schemas").path]
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let report = String(decoding: out, as: UTF8.self) + String(decoding: err, as: UTF8.self)
        #expect(process.terminationStatus == 0, "schema check failed:\n\(report)", sourceLocation: sourceLocation)
        #expect(report.contains("\(documents.count) documents checked"), "\(report)", sourceLocation: sourceLocation)
    }
}
