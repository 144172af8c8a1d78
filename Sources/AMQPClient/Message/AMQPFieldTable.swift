/// An AMQP field table: string keys (at most 255 bytes each) to ``AMQPFieldValue``s.
///
/// ```swift
/// let arguments: AMQPFieldTable = [
///     "x-message-ttl": 60_000,
///     "x-dead-letter-exchange": "orders.dlx",
/// ]
/// ```
public struct AMQPFieldTable: Sendable, Hashable {
    /// The table's entries by key.
    public var values: [String: AMQPFieldValue]

    /// A table of `values`; empty by default.
    public init(_ values: [String: AMQPFieldValue] = [:]) {
        self.values = values
    }

    /// A table of key-value pairs. Despite the name, a key may repeat: the last value wins.
    public init(uniqueKeysWithValues elements: some Sequence<(String, AMQPFieldValue)>) {
        self.values = Dictionary(elements, uniquingKeysWith: { _, last in last })
    }

    /// The value for `key`, or `nil` when the table has none; setting `nil` removes the entry.
    public subscript(key: String) -> AMQPFieldValue? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// Whether the table has no entries.
    public var isEmpty: Bool { values.isEmpty }
    /// The number of entries.
    public var count: Int { values.count }
}

extension AMQPFieldTable: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, AMQPFieldValue)...) {
        self.init(uniqueKeysWithValues: elements)
    }
}

extension AMQPFieldTable: Sequence {
    public func makeIterator() -> Dictionary<String, AMQPFieldValue>.Iterator {
        values.makeIterator()
    }
}

extension AMQPFieldTable {
    /// Throws when a key, at any depth, is longer than AMQP's 255 bytes.
    func validate(_ what: String) throws(AMQPError) {
        for (key, value) in values {
            try AMQPError.checkShortString(key, "\(what) key \"\(key.prefix(32))…\"")
            try value.validate(what)
        }
    }
}

extension AMQPFieldValue {
    func validate(_ what: String) throws(AMQPError) {
        switch self {
        case .table(let table): try table.validate(what)
        case .array(let values): for value in values { try value.validate(what) }
        default: break
        }
    }
}
