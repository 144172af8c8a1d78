import AMQPEvents
import AMQPEventsSQLite
import Foundation
import GRDB
import SampleSupport

/// The seed's event: `{type: 'OrderPlaced', orderId, items, customerId}` on `order_events`.
struct BookOrderPlaced: AMQPEvent {
    static let eventType = "OrderPlaced"
    struct Item: Codable, Sendable {
        var isbn: String
        var quantity: Int
    }
    var orderId: String
    var customerId: String
    var items: [Item]
}

/// The email service could not send (a transient failure: try again later).
struct EmailServerUnavailable: Error, CustomStringConvertible {
    var orderId: String
    var description: String { "the mail server did not answer for orderId=\(orderId)" }
}

/// Names the bookstore's services share.
struct Bookstore: Sendable {
    /// The domain exchange (`order_events`, as in the seed; the demo uses one of its own).
    var exchange = "order_events"
    /// Delayed retries of the email service.
    var emailRetry = RetryPolicy.exponential(immediateRetries: 1, first: .milliseconds(200), steps: 4)

    var inventoryQueue: String { EventTopology.serviceQueue(exchange: exchange, service: "inventory") }
    var paymentQueue: String { EventTopology.serviceQueue(exchange: exchange, service: "payment") }
    var emailQueue: String { EventTopology.serviceQueue(exchange: exchange, service: "email") }

    func inventory(tally: Tally, only prefix: String? = nil) -> EventSubscription {
        EventSubscription.publishSubscribe(exchange: exchange, service: "inventory")
            .deduplicating(with: InMemoryDeduplicationStore())
            .on(BookOrderPlaced.self) { order, _ in
                if let prefix, !order.orderId.hasPrefix(prefix) { return }
                guard tally.record("inventory", order.orderId) else { return }
                // The order's text is the sender's: printed escaped.
                let books = order.items.map { "\($0.quantity) x \($0.isbn)" }.joined(separator: ", ")
                print(" [inventory] reserved \(printable(books)) orderId=\(printable(order.orderId))")
            }
    }

    func payment(tally: Tally, only prefix: String? = nil) -> EventSubscription {
        EventSubscription.publishSubscribe(exchange: exchange, service: "payment")
            .deduplicating(with: InMemoryDeduplicationStore())
            .on(BookOrderPlaced.self) { order, _ in
                if let prefix, !order.orderId.hasPrefix(prefix) { return }
                guard tally.record("payment", order.orderId) else { return }
                print(" [payment] charged customer \(printable(order.customerId)) orderId=\(printable(order.orderId))")
            }
    }

    /// Sends the confirmation email: the email and the message id are recorded in one SQLite
    /// transaction (the inbox), so an order's email goes out once, whatever is redelivered.
    func email(
        store: SQLiteEventStore, tally: Tally, failureRate: Double, failOrder: String?, only prefix: String? = nil,
        crashAfter: Int? = nil
    ) -> EventSubscription {
        EventSubscription.publishSubscribe(exchange: exchange, service: "email")
            .retrying(emailRetry)
            .on(BookOrderPlaced.self) { order, context in
                if let prefix, !order.orderId.hasPrefix(prefix) { return }
                if order.orderId == failOrder || Double.random(in: 0..<1) < failureRate {
                    tally.record("failures", "\(order.orderId)/\(UUID())")
                    throw EmailServerUnavailable(orderId: order.orderId)
                }
                let sent = try await store.handleOnce(context) { db in
                    try db.execute(
                        sql: "INSERT INTO emails_sent (order_id, customer_id, sent_at) VALUES (?, ?, ?)",
                        arguments: [order.orderId, order.customerId, Date()])
                }
                guard sent else { return }
                print(" [x] email sent for orderId=\(printable(order.orderId))")
                tally.record("email", order.orderId)
                if let crashAfter, tally.counts["email", default: 0] >= crashAfter {
                    // A crash after the email is recorded and before the broker has the ack.
                    print(" [email] crashing on purpose after \(crashAfter) emails")
                    exit(3)
                }
            }
    }

    /// The service's database: its emails, its orders, and the event store's tables.
    static func openStore(path: String, appID: String) throws -> SQLiteEventStore {
        let store = try SQLiteEventStore(path: path, appID: appID)
        try store.database.write { db in
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, customer_id TEXT, placed_at DATETIME);
                    CREATE TABLE IF NOT EXISTS emails_sent (order_id TEXT PRIMARY KEY, customer_id TEXT, sent_at DATETIME);
                    """)
        }
        return store
    }

    /// Places an order: the order row and its `OrderPlaced` event in one transaction (the outbox).
    func place(_ order: BookOrderPlaced, in store: SQLiteEventStore) async throws {
        let exchange = self.exchange
        try await store.database.write { db in
            try db.execute(
                sql: "INSERT INTO orders (order_id, customer_id, placed_at) VALUES (?, ?, ?)",
                arguments: [order.orderId, order.customerId, Date()])
            try store.enqueue(order, to: exchange, in: db)
        }
    }

    /// The system's AsyncAPI document: the order service publishes through its outbox; inventory,
    /// payment and email receive.
    func contract() throws -> AsyncAPIDocument {
        var document = AsyncAPIDocument(
            title: "Bookstore", version: "1.0.0",
            description: """
                Seed 004: the order service commits each order and its OrderPlaced event in one SQLite transaction (the \
                outbox); inventory, payment and email each react on a durable queue, and email catches up after an outage.
                """)
        try document.publishes(BookOrderPlaced.self, to: exchange, by: "order-service")
        let tally = Tally()
        try document.subscribes(inventory(tally: tally), as: "inventory-service")
        try document.subscribes(payment(tally: tally), as: "payment-service")
        // The schema does not depend on the store: an in-memory one describes the subscription.
        try document.subscribes(
            email(store: try SQLiteEventStore(database: DatabaseQueue()), tally: tally, failureRate: 0, failOrder: nil),
            as: "email-service")
        return document
    }

    static func sampleOrder(_ id: String, _ index: Int) -> BookOrderPlaced {
        BookOrderPlaced(
            orderId: id, customerId: "\(1000 + index % 50)",
            items: [.init(isbn: "978-0262033848", quantity: 1), .init(isbn: "978-1491950357", quantity: 1 + index % 2)])
    }
}
