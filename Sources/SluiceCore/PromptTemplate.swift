import Foundation
import Mustache
import Yams

/// A Portkey-style prompt template (docs/contract.md, Jobs): `prompts_dir/{id}.yaml` with a
/// provider, a model, messages whose contents are Mustache templates over the request's
/// `variables`, and default hyperparameters that the request's overrides replace.
///
/// Rendering is plain text (no HTML escaping: a prompt is not a web page). A variable the
/// template uses but the request does not give is an error naming it, never an empty
/// string; variables used only as sections (`{{#x}}…{{/x}}`) may be absent.
public struct PromptTemplate: Sendable {
    public var id: String
    public var provider: String?
    public var model: String?
    public var messages: [(role: String, content: String)]
    public var parameters: [String: JSONValue]

    /// Whether `id` is safe as a file name: letters, digits, `-`, `_` and `.`, not
    /// starting with a dot.
    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && !id.hasPrefix(".")
            && id.unicodeScalars.allSatisfy { $0.properties.isAlphabetic && $0.isASCII || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }
    }

    public static func parse(id: String, yaml: String) throws -> PromptTemplate {
        let root: JSONValue
        do {
            guard let node = try Yams.load(yaml: yaml) else { throw SluiceError(.invalidRequest, "prompt \"\(id)\" is empty") }
            root = try JSONValue(yaml: node)
        } catch let e as SluiceError {
            throw e
        } catch {
            throw SluiceError(.invalidRequest, "prompt \"\(id)\" is not valid YAML: \(error)")
        }
        guard case .object(let o) = root else {
            throw SluiceError(.invalidRequest, "prompt \"\(id)\" must be a YAML mapping")
        }
        guard let list = o["messages"]?.arrayValue, !list.isEmpty else {
            throw SluiceError(.invalidRequest, "prompt \"\(id)\" has no \"messages\"")
        }
        var messages: [(String, String)] = []
        for (i, m) in list.enumerated() {
            guard let role = m["role"]?.stringValue, let content = m["content"]?.stringValue else {
                throw SluiceError(.invalidRequest, "prompt \"\(id)\" messages[\(i)] needs a \"role\" and a string \"content\"")
            }
            messages.append((role, content))
        }
        var parameters: [String: JSONValue] = [:]
        for k in Job.hyperparameterKeys { if let v = o[k], !v.isNull { parameters[k] = v } }
        if let p = o["parameters"]?.objectValue { parameters.merge(p, uniquingKeysWith: { $1 }) }
        return PromptTemplate(
            id: id, provider: o["provider"]?.stringValue, model: o["model"]?.stringValue,
            messages: messages, parameters: parameters)
    }

    /// The messages with `variables` filled in.
    public func render(_ variables: [String: JSONValue]) throws -> [JSONValue] {
        try messages.map { m in
            for name in PromptTemplate.requiredVariables(in: m.content) where variables[name] == nil || variables[name] == .null {
                throw SluiceError(.missingVariable, "missing variable \"\(name)\" in prompt \"\(id)\"", context: ["variable": name])
            }
            let template: MustacheTemplate
            do {
                template = try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + m.content)
            } catch {
                throw SluiceError(.invalidRequest, "prompt \"\(id)\" has a broken template: \(error)")
            }
            let rendered = template.render(variables.mapValues(\.mustacheValue))
            return ["role": .string(m.role), "content": .string(rendered)]
        }
    }

    /// Top-level names of the plain variable tags (`{{x}}`, `{{{x}}}`, `{{& x}}`,
    /// `{{x.y}}` needs `x`), outside sections, which bind names of their own.
    static func requiredVariables(in template: String) -> [String] {
        var names: [String] = []
        var depth = 0
        var rest = Substring(template)
        while let open = rest.range(of: "{{") {
            var after = rest[open.upperBound...]
            let triple = after.hasPrefix("{")
            if triple { after = after.dropFirst() }
            guard let close = after.range(of: triple ? "}}}" : "}}") else { break }
            let tag = after[..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            rest = after[close.upperBound...]
            guard let sigil = tag.first else { continue }
            switch sigil {
            case "#", "^", "$", "<": depth += 1
            case "/": depth = max(0, depth - 1)
            case "!", "%", ">", "=": continue
            default:
                let name = sigil == "&" ? tag.dropFirst().trimmingCharacters(in: .whitespaces) : tag
                guard depth == 0, name != "." else { continue }
                let top = String(name.split(separator: ".").first ?? Substring(name))
                if !names.contains(top) { names.append(top) }
            }
        }
        return names
    }
}

extension JSONValue {
    /// What Mustache renders: strings, numbers (integers without a decimal point),
    /// booleans, arrays and dictionaries.
    var mustacheValue: Any {
        switch self {
        case .null: return ""
        case .bool(let b): return b
        case .number(let n): return n.rounded() == n && abs(n) < 9e15 ? Int(n) as Any : n as Any
        case .string(let s): return s
        case .array(let a): return a.map(\.mustacheValue)
        case .object(let o): return o.mapValues(\.mustacheValue)
        }
    }

    /// Converts what Yams loaded into JSON.
    init(yaml node: Any) throws {
        switch node {
        case let s as String: self = .string(s)
        case let b as Bool: self = .bool(b)
        case let i as Int: self = .number(Double(i))
        case let d as Double: self = .number(d)
        case let a as [Any]: self = .array(try a.map(JSONValue.init(yaml:)))
        case let o as [String: Any]: self = .object(try o.mapValues(JSONValue.init(yaml:)))
        case is NSNull: self = .null
        default: throw SluiceError(.invalidRequest, "unsupported YAML value \(node)")
        }
    }
}

extension PromptTemplate {
    /// Reads `directory/{id}.yaml` (or `.yml`): the one place templates are read, by the
    /// gateway (to check a request before it is queued) and by the worker (to run it).
    ///
    /// Throws `unknownPrompt` for an id that is not a safe file name or names no file
    /// (the message does not show the directory: it goes back to clients), and what
    /// `parse` throws for a broken template.
    public static func load(id: String, from directory: String) throws -> PromptTemplate {
        guard isValidID(id) else {
            throw SluiceError(.unknownPrompt, "no prompt \"\(id)\": prompt ids are letters, digits, '-', '_' and '.'")
        }
        for ext in ["yaml", "yml"] {
            guard let data = FileManager.default.contents(atPath: "\(directory)/\(id).\(ext)") else { continue }
            return try parse(id: id, yaml: String(decoding: data, as: UTF8.self))
        }
        throw SluiceError(.unknownPrompt, "no prompt \"\(id)\" (looked for \(id).yaml in prompts_dir)")
    }

    /// Where a job that runs this template goes: the job's own provider and model win; a
    /// model that routes itself (`provider/model`, or an alias of `config.models`)
    /// overrides the template's provider too, while a bare model name keeps it.
    public func target(provider: String?, model: String?, config: SluiceConfig) -> (provider: String?, model: String?) {
        let selfRouting = model.map { $0.contains("/") || config.models[$0] != nil } ?? false
        return (provider ?? (selfRouting ? nil : self.provider), model ?? self.model)
    }
}
