import AMQPEvents
import SampleSupport

/// The seed's event: `{"orderId": "123", "userId": "456", "amount": 100}` of type `OrderPlaced`.
struct OrderPlaced: AMQPEvent {
    static let eventType = "OrderPlaced"
    var orderId: String
    var userId: String
    var amount: Int
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
    }
}
