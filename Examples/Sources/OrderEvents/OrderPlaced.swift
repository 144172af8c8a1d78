import AMQPEvents
import SampleSupport

/// The seed's event, `{"orderId": "123", "userId": "456", "amount": 100}` of type `OrderPlaced`,
/// in its second schema version: the amount's currency is said.
struct OrderPlaced: AMQPEvent {
    static let eventType = "OrderPlaced"
    static let schemaVersion = 2
    var orderId: String
    var userId: String
    var amount: Int
    /// ISO 4217; new in version 2.
    var currency: String = "USD"
}

/// Version 1 of `OrderPlaced`, as the seed wrote it (and services not yet upgraded still publish).
struct OrderPlacedV1: AMQPEvent {
    static let eventType = "OrderPlaced"
    static let schemaVersion = 1
    var orderId: String
    var userId: String
    var amount: Int

    /// Version 2 of the same order: version 1 was in US dollars.
    var upcast: OrderPlaced { OrderPlaced(orderId: orderId, userId: userId, amount: amount, currency: "USD") }
}

/// The services that react to an order, each on its own durable queue (`orders.payment`, …).
enum OrderService: String, CaseIterable, Sendable {
    case payment, inventory, notification

    static let exchange = "orders"

    /// What the service does with an order, as the line it prints (the order's text escaped: it is
    /// the sender's).
    func line(for order: OrderPlaced) -> String {
        let (userId, orderId) = (printable(order.userId), printable(order.orderId))
        return switch self {
        case .payment: " [payment] charged amount=\(order.amount) userId=\(userId) orderId=\(orderId)"
        case .inventory: " [inventory] reserved stock orderId=\(orderId)"
        case .notification: " [notification] sent confirmation to userId=\(userId) orderId=\(orderId)"
        }
    }

    /// The service's subscription: every `OrderPlaced` of the `orders` exchange. An order already
    /// handled (redelivered after a lost connection) is acknowledged without acting twice.
    ///
    /// With `runPrefix`, only orders whose id starts with it count (a demo ignores what earlier
    /// runs left in the durable queues).
    func subscription(tally: Tally, runPrefix: String? = nil) -> EventSubscription {
        EventSubscription.publishSubscribe(exchange: Self.exchange, service: rawValue)
            .on(OrderPlaced.self) { order, context in
                if let runPrefix, !order.orderId.hasPrefix(runPrefix) { return }
                guard tally.record(rawValue, order.orderId) else { return }
                print(line(for: order))
            }
            // Orders from a publisher still on version 1 are read as version 2.
            .upcasting(OrderPlacedV1.self, version: 1, to: OrderPlaced.self) { $0.upcast }
    }

    /// The system's AsyncAPI document: the order service publishes, each service receives.
    static func contract() throws -> AsyncAPIDocument {
        var document = AsyncAPIDocument(
            title: "Order events", version: "1.0.0",
            description: "Seed 001: the order service emits OrderPlaced; payment, inventory and notification react, each on its own durable queue.")
        try document.publishes(OrderPlaced.self, to: exchange, by: "order-service")
        for service in allCases {
            try document.subscribes(service.subscription(tally: Tally()), as: "\(service.rawValue)-service")
        }
        return document
    }
}
