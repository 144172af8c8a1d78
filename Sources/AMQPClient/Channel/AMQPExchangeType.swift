/// The routing algorithm of an exchange. Plugins add more (for example
/// `x-delayed-message`, `x-consistent-hash`): create those with ``init(_:)``.
public struct AMQPExchangeType: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The type's name as the broker knows it: `direct`, `fanout`, `topic`, `headers` or a plugin's.
    public var name: String

    /// The exchange type called `name`.
    public init(_ name: String) { self.name = name }
    public init(stringLiteral value: String) { self.name = value }

    /// Routes to queues bound with exactly the message's routing key.
    public static let direct = AMQPExchangeType("direct")
    /// Routes to every bound queue: one event, many services.
    public static let fanout = AMQPExchangeType("fanout")
    /// Routes by pattern: `order.*`, `#.eu`.
    public static let topic = AMQPExchangeType("topic")
    /// Routes by matching message headers against binding arguments.
    public static let headers = AMQPExchangeType("headers")

    public var description: String { name }
}
