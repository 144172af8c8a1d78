/// A request that expects one typed response, over RabbitMQ's direct reply-to.
///
/// ```swift
/// struct FindDriver: AMQPRequest {
///     typealias Response = DriverAssigned
///     static let eventType = "FindDriver"
///     var orderId: String
/// }
/// let driver = try await bus.request(FindDriver(orderId: "42"), to: "dispatcher")
/// ```
public protocol AMQPRequest: AMQPEvent {
    /// The event the responder replies with.
    associatedtype Response: AMQPEvent
}
