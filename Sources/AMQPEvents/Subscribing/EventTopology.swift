public import AMQPClient

/// The names and arguments every side agrees on, so that a producer and its consumers declare the
/// same queue the same way (RabbitMQ refuses a second declaration with other arguments).
public enum EventTopology {
    /// The queue of a service subscribed to a domain's exchange: `orders.payment`.
    public static func serviceQueue(exchange: String, service: String) -> String {
        "\(exchange).\(service)"
    }

    /// Where a queue's messages go when no handler can take them: `orders.payment.parked`.
    public static func parkingLot(of queue: String) -> String {
        "\(queue).parked"
    }

    /// A durable event queue's arguments: what is rejected goes to its parking lot.
    public static func queueArguments(_ queue: String) -> AMQPFieldTable {
        ["x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(parkingLot(of: queue))]
    }
}
