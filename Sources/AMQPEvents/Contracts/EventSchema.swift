import Foundation

/// A type that gives its own JSON Schema, for what ``EventSchema`` cannot learn by decoding
/// (an enum with associated values, a recursive type, a custom `init(from:)` that chooses
/// between shapes).
///
/// ```swift
/// extension Money: EventSchemaProviding {
///     static var jsonSchema: JSONValue { ["type": "string", "pattern": "^[0-9]+\\.[0-9]{2} [A-Z]{3}$"] }
/// }
/// ```
public protocol EventSchemaProviding {
    /// The type's JSON Schema, used wherever the type appears in an event.
    static var jsonSchema: JSONValue { get }
}

/// JSON Schemas of `Decodable` types, as ``JSONEventCoder`` writes them: learnt by decoding the
/// type once with a decoder that records what it is asked for. Property names and their types,
/// optionals (not required), nested structs, arrays, sets, dictionaries with string keys,
/// `CaseIterable` enums with string or integer raw values (`enum`), `Date` (`date-time`),
/// `UUID`, `URL`, `Data` (base64) and `Decimal`.
///
/// ```swift
/// let schema = try EventSchema.of(OrderPlaced.self)
/// // {"type": "object", "properties": {"orderId": {"type": "string"}, …}, "required": [...]}
/// ```
public enum EventSchema {
    /// The type's schema (JSON Schema draft 7, which AsyncAPI's schema format extends).
    public static func of<T: Decodable>(_ type: T.Type) throws(EventError) -> JSONValue {
        do {
            // A type with a schema of its own needs no value: a recursive one is not decoded.
            if let known = SchemaRecorder.knownSchema(of: type) { return known }
            return try SchemaRecorder.record(type, depth: 0).1
        } catch let error as EventError {
            throw error
        } catch {
            throw EventError(
                code: .invalidArgument,
                message: "the schema of \(T.self) could not be learnt by decoding it (\(error)); conform it to EventSchemaProviding")
        }
    }

    /// The schema's problems with `value`: empty when it conforms. Checks what ``of(_:)``
    /// writes: `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`
    /// and the `date-time` format.
    public static func problems(of value: JSONValue, against schema: JSONValue) -> [String] {
        var problems: [String] = []
        SchemaCheck.check(value, against: schema, at: "$", into: &problems)
        return problems
    }
}

// MARK: - Recording

/// Decodes a type once, answering every question with a placeholder and writing down the shape.
enum SchemaRecorder {
    /// Nesting deeper than this is a recursive type: it needs ``EventSchemaProviding``.
    static let maximumDepth = 32

    /// The schemas of the types the recorder does not decode: those with a JSON form of their own.
    static func knownSchema<T>(of type: T.Type) -> JSONValue? {
        if let provided = type as? any EventSchemaProviding.Type { return provided.jsonSchema }
        switch type {
        case is Date.Type: return ["type": "string", "format": "date-time"]
        case is UUID.Type: return ["type": "string", "format": "uuid"]
        case is URL.Type: return ["type": "string", "format": "uri"]
        case is Data.Type: return ["type": "string", "contentEncoding": "base64"]
        case is Decimal.Type: return ["type": "number"]
        default: break
        }
        if let enumeration = type as? any (CaseIterable & RawRepresentable).Type {
            return enumSchema(enumeration)
        }
        return nil
    }

    private static func enumSchema<E: CaseIterable & RawRepresentable>(_ type: E.Type) -> JSONValue? {
        let values: [JSONValue] = E.allCases.compactMap { value in
            switch value.rawValue {
            case let raw as String: .string(raw)
            case let raw as Int: .number(Double(raw))
            default: nil
            }
        }
        guard values.count == E.allCases.count, let first = values.first else { return nil }
        let type: JSONValue = if case .string = first { "string" } else { "integer" }
        return ["type": type, "enum": .array(values)]
    }

    /// A placeholder value of a type with a known schema, to hand back to the decoding type.
    static func placeholder<T>(of type: T.Type) -> T? {
        switch type {
        case is Date.Type: return Date(timeIntervalSince1970: 0) as? T
        case is UUID.Type: return UUID() as? T
        case is URL.Type: return URL(string: "urn:schema") as? T
        case is Data.Type: return Data() as? T
        case is Decimal.Type: return Decimal(0) as? T
        default: break
        }
        if let enumeration = type as? any (CaseIterable & RawRepresentable).Type {
            return firstCase(enumeration) as? T
        }
        return nil
    }

    private static func firstCase<E: CaseIterable>(_ type: E.Type) -> Any? { E.allCases.first }

    /// What one value turned out to be.
    final class Node {
        /// Only a value is needed, not a schema: that of a type which gives its own schema.
        /// Arrays are then empty and optionals `nil`, so a recursive type decodes to a finite value.
        let valueOnly: Bool

        init(valueOnly: Bool = false) {
            self.valueOnly = valueOnly
        }

        enum Shape {
            case unknown
            case schema(JSONValue)
            case object(properties: [(String, JSONValue)], required: [String])
            case array(items: JSONValue)
            case dictionary(values: JSONValue)
        }
        var shape = Shape.unknown

        var schema: JSONValue {
            switch shape {
            case .unknown: return [:]
            case .schema(let schema): return schema
            case .object(let properties, let required):
                var schema: [String: JSONValue] = [
                    "type": "object", "properties": .object(Dictionary(properties, uniquingKeysWith: { _, last in last })),
                ]
                if !required.isEmpty { schema["required"] = .array(required.map { .string($0) }) }
                return .object(schema)
            case .array(let items): return ["type": "array", "items": items]
            case .dictionary(let values): return ["type": "object", "additionalProperties": values]
            }
        }

        func addProperty(_ name: String, _ schema: JSONValue, required: Bool) {
            guard case .object(var properties, var requiredNames) = shape else {
                shape = .object(properties: [(name, schema)], required: required ? [name] : [])
                return
            }
            properties.removeAll { $0.0 == name }
            properties.append((name, schema))
            if required && !requiredNames.contains(name) { requiredNames.append(name) }
            shape = .object(properties: properties, required: requiredNames)
        }
    }

    struct RecordingDecoder: Decoder {
        let node: Node
        let depth: Int
        var codingPath: [any CodingKey] = []
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            if case .unknown = node.shape { node.shape = .object(properties: [], required: []) }
            return KeyedDecodingContainer(KeyedRecorder<Key>(node: node, depth: depth))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            UnkeyedRecorder(node: node, depth: depth)
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer {
            SingleValueRecorder(node: node, depth: depth)
        }
    }

    /// Decodes `T` in a node of its own and returns the value with the node's schema.
    /// `valueOnly`: the caller needs only a value (see ``Node/valueOnly``).
    static func record<T: Decodable>(_ type: T.Type, depth: Int, valueOnly: Bool = false) throws -> (T, JSONValue) {
        if let schema = knownSchema(of: type), let value = placeholder(of: type) { return (value, schema) }
        if let primitive = primitive(type) { return primitive }
        if let dictionary = type as? any StringKeyedDictionary.Type {
            if valueOnly { return (dictionary.empty as! T, [:]) }
            let values = try dictionary.valueSchema(depth: depth + 1)
            return (dictionary.empty as! T, ["type": "object", "additionalProperties": values])
        }
        guard depth < maximumDepth else {
            throw EventError(
                code: .invalidArgument,
                message: "\(T.self) nests more than \(maximumDepth) levels (is it recursive?); conform it to EventSchemaProviding")
        }
        // A type that gives its schema still needs a value for the type that holds it.
        let provided = (type as? any EventSchemaProviding.Type)?.jsonSchema
        let node = Node(valueOnly: valueOnly || provided != nil)
        let value = try T(from: RecordingDecoder(node: node, depth: depth + 1))
        return (value, provided ?? node.schema)
    }

    /// The JSON primitives, with a placeholder each.
    static func primitive<T>(_ type: T.Type) -> (T, JSONValue)? {
        func integer(_ value: some FixedWidthInteger) -> (T, JSONValue)? { (value as! T, ["type": "integer"]) }
        switch type {
        case is String.Type: return ("" as! T, ["type": "string"])
        case is Bool.Type: return (false as! T, ["type": "boolean"])
        case is Double.Type: return (0.0 as! T, ["type": "number"])
        case is Float.Type: return (Float(0) as! T, ["type": "number"])
        case is Int.Type: return integer(0 as Int)
        case is Int8.Type: return integer(0 as Int8)
        case is Int16.Type: return integer(0 as Int16)
        case is Int32.Type: return integer(0 as Int32)
        case is Int64.Type: return integer(0 as Int64)
        case is UInt.Type: return integer(0 as UInt)
        case is UInt8.Type: return integer(0 as UInt8)
        case is UInt16.Type: return integer(0 as UInt16)
        case is UInt32.Type: return integer(0 as UInt32)
        case is UInt64.Type: return integer(0 as UInt64)
        default: return nil
        }
    }

    struct KeyedRecorder<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let node: Node
        let depth: Int
        var codingPath: [any CodingKey] = []
        var allKeys: [Key] { [] }

        func contains(_ key: Key) -> Bool { true }
        func decodeNil(forKey key: Key) throws -> Bool { false }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try property(type, key, required: true) }
        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            try optionalProperty(type, key)
        }
        // Every primitive has a requirement of its own; the standard library's `decodeIfPresent`
        // overloads would call `decode` (and so mark the property required).
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try property(type, key, required: true) }
        func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try optionalProperty(type, key) }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try optionalProperty(type, key) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try optionalProperty(type, key) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try optionalProperty(type, key) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try optionalProperty(type, key) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try optionalProperty(type, key) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try optionalProperty(type, key) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try optionalProperty(type, key) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try optionalProperty(type, key) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try property(type, key, required: true) }
        func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try optionalProperty(type, key) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try optionalProperty(type, key) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try optionalProperty(type, key) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try optionalProperty(type, key) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try property(type, key, required: true) }
        func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try optionalProperty(type, key) }

        private func optionalProperty<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? {
            node.valueOnly ? nil : try property(type, key, required: false)
        }

        private func property<T: Decodable>(_ type: T.Type, _ key: Key, required: Bool) throws -> T {
            let (value, schema) = try record(type, depth: depth, valueOnly: node.valueOnly)
            node.addProperty(key.stringValue, schema, required: required)
            return value
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
            -> KeyedDecodingContainer<NestedKey>
        {
            let child = Node(valueOnly: node.valueOnly)
            child.shape = .object(properties: [], required: [])
            defer { node.addProperty(key.stringValue, child.schema, required: true) }
            return KeyedDecodingContainer(KeyedRecorder<NestedKey>(node: child, depth: depth + 1))
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            throw EventError(code: .invalidArgument, message: "a hand-written nested array under \(key.stringValue)")
        }

        func superDecoder() throws -> any Decoder { RecordingDecoder(node: node, depth: depth) }
        func superDecoder(forKey key: Key) throws -> any Decoder { RecordingDecoder(node: node, depth: depth) }
    }

    /// An array's items: its first element's schema; then it is at its end.
    struct UnkeyedRecorder: UnkeyedDecodingContainer {
        let node: Node
        let depth: Int
        var codingPath: [any CodingKey] = []
        var count: Int? { nil }
        var isAtEnd: Bool { node.valueOnly || currentIndex > 0 }
        var currentIndex = 0

        init(node: Node, depth: Int) {
            self.node = node
            self.depth = depth
            if case .unknown = node.shape { node.shape = .array(items: [:]) }
        }

        mutating func decodeNil() throws -> Bool { false }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try element(type) }
        mutating func decode(_ type: String.Type) throws -> String { try element(type) }
        mutating func decode(_ type: Bool.Type) throws -> Bool { try element(type) }
        mutating func decode(_ type: Double.Type) throws -> Double { try element(type) }
        mutating func decode(_ type: Float.Type) throws -> Float { try element(type) }
        mutating func decode(_ type: Int.Type) throws -> Int { try element(type) }
        mutating func decode(_ type: Int8.Type) throws -> Int8 { try element(type) }
        mutating func decode(_ type: Int16.Type) throws -> Int16 { try element(type) }
        mutating func decode(_ type: Int32.Type) throws -> Int32 { try element(type) }
        mutating func decode(_ type: Int64.Type) throws -> Int64 { try element(type) }
        mutating func decode(_ type: UInt.Type) throws -> UInt { try element(type) }
        mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try element(type) }
        mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try element(type) }
        mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try element(type) }
        mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try element(type) }

        private mutating func element<T: Decodable>(_ type: T.Type) throws -> T {
            let (value, schema) = try record(type, depth: depth, valueOnly: node.valueOnly)
            node.shape = .array(items: schema)
            currentIndex += 1
            return value
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            let child = Node(valueOnly: node.valueOnly)
            child.shape = .object(properties: [], required: [])
            node.shape = .array(items: [:])
            currentIndex += 1
            return KeyedDecodingContainer(KeyedRecorder<NestedKey>(node: child, depth: depth + 1))
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            throw EventError(code: .invalidArgument, message: "a hand-written nested array")
        }

        mutating func superDecoder() throws -> any Decoder { RecordingDecoder(node: node, depth: depth) }
    }

    /// One value in place of the whole: a wrapper type, or a raw-value enum.
    struct SingleValueRecorder: SingleValueDecodingContainer {
        let node: Node
        let depth: Int
        var codingPath: [any CodingKey] = []

        func decodeNil() -> Bool { false }

        func decode<T: Decodable>(_ type: T.Type) throws -> T { try value(type) }
        func decode(_ type: String.Type) throws -> String { try value(type) }
        func decode(_ type: Bool.Type) throws -> Bool { try value(type) }
        func decode(_ type: Double.Type) throws -> Double { try value(type) }
        func decode(_ type: Float.Type) throws -> Float { try value(type) }
        func decode(_ type: Int.Type) throws -> Int { try value(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try value(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try value(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try value(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try value(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try value(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try value(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try value(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try value(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try value(type) }

        private func value<T: Decodable>(_ type: T.Type) throws -> T {
            let (value, schema) = try record(type, depth: depth, valueOnly: node.valueOnly)
            node.shape = .schema(schema)
            return value
        }
    }
}

/// `[String: Value]`, whose schema is an object of values.
protocol StringKeyedDictionary {
    static func valueSchema(depth: Int) throws -> JSONValue
    static var empty: Self { get }
}

extension Dictionary: StringKeyedDictionary where Key == String, Value: Decodable {
    static func valueSchema(depth: Int) throws -> JSONValue { try SchemaRecorder.record(Value.self, depth: depth).1 }
    static var empty: Self { [:] }
}

// MARK: - Checking

/// Checks a value against the subset of JSON Schema that ``EventSchema/of(_:)`` writes.
enum SchemaCheck {
    static func check(_ value: JSONValue, against schema: JSONValue, at path: String, into problems: inout [String]) {
        guard case .object(let rules) = schema else { return }
        if let expected = rules["const"], expected != value {
            problems.append("\(path): expected \(expected)")
        }
        if let allowed = rules["enum"]?.arrayValue, !allowed.contains(value) {
            problems.append("\(path): not one of the allowed values")
        }
        if let type = rules["type"] {
            let types = type.arrayValue?.compactMap(\.stringValue) ?? [type.stringValue].compactMap { $0 }
            guard types.contains(where: { matches(value, type: $0) }) else {
                problems.append("\(path): expected \(types.joined(separator: " or ")), found \(kind(of: value))")
                return
            }
        }
        if rules["format"]?.stringValue == "date-time", case .string(let text) = value, !isDateTime(text) {
            problems.append("\(path): not an RFC 3339 date-time")
        }
        switch value {
        case .object(let members):
            for name in rules["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where members[name] == nil {
                problems.append("\(path): missing required property \(name)")
            }
            let properties = rules["properties"]?.objectValue ?? [:]
            for (name, member) in members {
                if let propertySchema = properties[name] {
                    check(member, against: propertySchema, at: "\(path).\(name)", into: &problems)
                } else if let additional = rules["additionalProperties"] {
                    if additional == .bool(false) {
                        problems.append("\(path): unexpected property \(name)")
                    } else {
                        check(member, against: additional, at: "\(path).\(name)", into: &problems)
                    }
                }
            }
        case .array(let elements):
            if let items = rules["items"] {
                for (index, element) in elements.enumerated() {
                    check(element, against: items, at: "\(path)[\(index)]", into: &problems)
                }
            }
        default:
            break
        }
    }

    static func matches(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number):
            true
        case ("integer", .number(let number)): number.rounded() == number
        default: false
        }
    }

    static func kind(of value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    static func isDateTime(_ text: String) -> Bool {
        let formatter = ISO8601DateFormatter()
        if formatter.date(from: text) != nil { return true }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) != nil
    }
}
