import AMQPClient

/// What a handler knows about the event it handles, and the bus to emit more on. Events published
/// while handling one carry its correlation id and, as their causation id, its message id.
public struct EventContext: Sendable {
    /// The event's envelope.
    public let metadata: EventMetadata
    /// The broker delivered it before (the last attempt did not settle it).
    public let redelivered: Bool
    /// The queue it came from.
    public let queue: String
    /// The exchange it was published to.
    public let exchange: String
    /// The routing key it was published with.
    public let routingKey: String
    /// The bus it came in on.
    public let bus: EventBus
    /// How many delayed retries it has had (its `x-retry-attempt` header; 0 the first time).
    public let retryAttempt: Int
    /// How many times the broker delivered it before, when the broker counts (a quorum queue's
    /// `x-delivery-count`).
    public let deliveryCount: Int?

    /// The context of the event being handled by the current task, if any.
    @TaskLocal public static var current: EventContext?

    /// A context for calling a handler directly, in a unit test: the handler sees `metadata` and
    /// publishes through `bus` (one on an `InMemoryBroker` needs no RabbitMQ).
    public init(
        metadata: EventMetadata, queue: String, bus: EventBus, exchange: String = "", routingKey: String = "",
        redelivered: Bool = false, retryAttempt: Int = 0, deliveryCount: Int? = nil
    ) {
        self.metadata = metadata
        self.redelivered = redelivered
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
        self.bus = bus
        self.retryAttempt = retryAttempt
        self.deliveryCount = deliveryCount
    }

    init(delivery: AMQPDelivery, metadata: EventMetadata, queue: String, bus: EventBus) {
        self.metadata = metadata
        self.redelivered = delivery.redelivered
        self.queue = queue
        self.exchange = delivery.exchange
        self.routingKey = delivery.routingKey
        self.bus = bus
        let headers = delivery.properties.headers
        self.retryAttempt = headers?[EnvelopeHeader.retryAttempt]?.integerValue ?? 0
        self.deliveryCount = headers?[EnvelopeHeader.deliveryCount]?.integerValue
    }
}
