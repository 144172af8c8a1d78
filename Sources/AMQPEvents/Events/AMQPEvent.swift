/// Something that happened, as a value every service can decode: `OrderPlaced`, `UserRegistered`.
///
/// ```swift
/// struct OrderPlaced: AMQPEvent {
///     static let eventType = "OrderPlaced"
///     var orderId: String
///     var userId: String
///     var amount: Int
/// }
/// ```
///
/// ``eventType`` travels as the message's `type` property and is the routing key: keep it when the
/// Swift type is renamed. ``schemaVersion`` travels in the `x-schema-version` header; raise it when
/// the payload changes in a way old consumers cannot read, and have consumers check
/// ``EventMetadata/schemaVersion``.
public protocol AMQPEvent: Codable, Sendable {
    /// The event's stable name on the wire.
    static var eventType: String { get }
    /// The version of the payload's schema; 1 unless given.
    static var schemaVersion: Int { get }
}

extension AMQPEvent {
    public static var schemaVersion: Int { 1 }
}
