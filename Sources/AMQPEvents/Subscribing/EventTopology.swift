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

    /// The delay queue of delayed retry `step` (1-based): `orders.email.retry.1`.
    public static func retryQueue(of queue: String, step: Int) -> String {
        "\(queue).retry.\(step)"
    }

    /// A durable event queue's arguments: what is rejected goes to its parking lot.
    public static func queueArguments(_ queue: String, type: EventQueueType = .classic) -> AMQPFieldTable {
        var arguments: AMQPFieldTable = [
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(parkingLot(of: queue)),
        ]
        type.add(to: &arguments)
        return arguments
    }

    /// A delay queue's arguments: messages wait at most `maximumDelay`, then go back to `queue`.
    static func retryQueueArguments(_ queue: String, maximumDelay: Duration, type: EventQueueType) -> AMQPFieldTable {
        var arguments: AMQPFieldTable = [
            "x-message-ttl": .int64(Int64(maximumDelay.ttlMilliseconds)),
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(queue),
        ]
        type.add(to: &arguments)
        return arguments
    }
}

/// The kind of a subscription's durable queues.
public enum EventQueueType: Sendable, Hashable {
    /// RabbitMQ's classic queue: on one node.
    case classic
    /// A quorum queue: replicated over the cluster's nodes.
    case quorum(deliveryLimit: Int)

    func add(to arguments: inout AMQPFieldTable) {
        guard case .quorum(let deliveryLimit) = self else { return }
        arguments["x-queue-type"] = "quorum"
        arguments["x-delivery-limit"] = .int64(Int64(deliveryLimit))
    }
}

extension Duration {
    /// As an AMQP time-to-live (a message's `expiration`, a queue's `x-message-ttl`): whole
    /// milliseconds, at least 1 (0 would expire at once).
    var ttlMilliseconds: Int {
        let (seconds, attoseconds) = components
        return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
    }
}
