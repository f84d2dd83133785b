/// An ordered list of HTTP header fields with case-insensitive lookup.
///
/// Request headers carry API keys, so this type never prints its values: `description`
/// and reflection (`print`, `dump`, string interpolation) show the names only.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (name: String, value: String)

    private var fields: [Element]

    public init() {
        self.fields = []
    }

    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    /// `["content-type": "application/json", "authorization": "Bearer ..."]`; order and
    /// repeated names are kept.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var count: Int { self.fields.count }
    public var isEmpty: Bool { self.fields.isEmpty }

    public func makeIterator() -> IndexingIterator<[Element]> {
        self.fields.makeIterator()
    }

    /// Appends a field, keeping any existing field of the same name.
    public mutating func add(name: String, value: String) {
        self.fields.append((name: name, value: value))
    }

    /// The first value of the field `name` (case-insensitive); setting replaces every
    /// field of that name, `nil` removes them.
    public subscript(name: String) -> String? {
        get { self.fields.first { $0.name.equalsCaseInsensitively(name) }?.value }
        set {
            self.fields.removeAll { $0.name.equalsCaseInsensitively(name) }
            if let newValue { self.fields.append((name: name, value: newValue)) }
        }
    }

    /// Every value of the field `name` (case-insensitive), in order.
    public func values(for name: String) -> [String] {
        self.fields.filter { $0.name.equalsCaseInsensitively(name) }.map(\.value)
    }

    public func contains(_ name: String) -> Bool {
        self.fields.contains { $0.name.equalsCaseInsensitively(name) }
    }
}

extension HTTPHeaders: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The field names only: values may be secrets.
    public var description: String { "[" + self.fields.map(\.name).joined(separator: ", ") + "]" }
    public var debugDescription: String { self.description }
    public var customMirror: Mirror { Mirror(self, children: ["names": self.fields.map(\.name)]) }
}

extension String {
    /// ASCII case-insensitive equality, without allocating (header names are ASCII).
    func equalsCaseInsensitively(_ other: String) -> Bool {
        var lhs = self.utf8.makeIterator()
        var rhs = other.utf8.makeIterator()
        while true {
            switch (lhs.next(), rhs.next()) {
            case (nil, nil):
                return true
            case (let l?, let r?) where l == r || (l | 0x20 == r | 0x20 && (l | 0x20) &- 0x61 < 26):
                continue
            default:
                return false
            }
        }
    }
}
