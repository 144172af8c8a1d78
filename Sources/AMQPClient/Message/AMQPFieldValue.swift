#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// One value in an AMQP field table: message headers and the arguments of
/// declarations, bindings and consumers.
///
/// The cases are the field types RabbitMQ understands. Literals pick the common
/// ones: `true`, `"text"`, `42` (``int32(_:)`` when it fits, else ``int64(_:)``),
/// `1.5` (``double(_:)``), `[…]` (``array(_:)``), `[key: …]` (``table(_:)``) and
/// `nil` (``void``).
public enum AMQPFieldValue: Sendable, Hashable {
    /// A boolean (AMQP type `t`).
    case bool(Bool)
    /// A signed 8-bit integer (AMQP type `b`).
    case int8(Int8)
    /// An unsigned 8-bit integer (AMQP type `B`).
    case uint8(UInt8)
    /// A signed 16-bit integer (AMQP type `s`).
    case int16(Int16)
    /// An unsigned 16-bit integer (AMQP type `u`).
    case uint16(UInt16)
    /// A signed 32-bit integer (AMQP type `I`).
    case int32(Int32)
    /// An unsigned 32-bit integer (AMQP type `i`).
    case uint32(UInt32)
    /// A signed 64-bit integer (AMQP type `l`).
    case int64(Int64)
    /// A 32-bit floating-point number (AMQP type `f`).
    case float(Float)
    /// A 64-bit floating-point number (AMQP type `d`).
    case double(Double)
    /// A decimal (AMQP type `D`).
    case decimal(AMQPDecimal)
    /// A long string (AMQP type `S`), UTF-8.
    case string(String)
    /// A byte array (AMQP type `x`).
    case bytes([UInt8])
    /// A timestamp with one-second resolution (AMQP type `T`); fractions of a second are dropped when sent.
    case timestamp(Date)
    /// A nested field table (AMQP type `F`).
    case table(AMQPFieldTable)
    /// An array of values, each of its own type (AMQP type `A`).
    case array([AMQPFieldValue])
    /// No value (AMQP type `V`).
    case void
}

/// An AMQP decimal: `value × 10^-scale`.
public struct AMQPDecimal: Sendable, Hashable {
    /// How many of the digits of ``value`` come after the decimal point.
    public var scale: UInt8
    /// The digits, as an integer.
    public var value: UInt32

    /// The decimal `value × 10^-scale`.
    public init(scale: UInt8, value: UInt32) {
        self.scale = scale
        self.value = value
    }
}

extension AMQPFieldValue: ExpressibleByBooleanLiteral, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) {
        if let small = Int32(exactly: value) {
            self = .int32(small)
        } else {
            self = .int64(value)
        }
    }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: AMQPFieldValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, AMQPFieldValue)...) {
        self = .table(AMQPFieldTable(uniqueKeysWithValues: elements))
    }
    public init(nilLiteral: ()) { self = .void }
}

extension AMQPFieldValue {
    /// The value as an `Int` when it is any integer type (headers such as `x-death`'s `count` come
    /// as one width or another depending on the sender).
    public var integerValue: Int? {
        switch self {
        case .int8(let value): Int(value)
        case .uint8(let value): Int(value)
        case .int16(let value): Int(value)
        case .uint16(let value): Int(value)
        case .int32(let value): Int(value)
        case .uint32(let value): Int(value)
        case .int64(let value): Int(value)
        default: nil
        }
    }
}
