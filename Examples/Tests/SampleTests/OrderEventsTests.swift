import AMQPEvents
import AMQPEventsTesting
@testable import OrderEvents
import SampleSupport
import Testing

/// Seed 001's services, unit-tested on the in-memory broker: no RabbitMQ.
@Suite("Samples: order-events on the test harness")
struct OrderEventsTests {
    @Test("an order placed reaches payment, inventory and notification, once each")
    func fanOut() async throws {
        try await EventTestHarness.withHarness { harness in
            let tally = Tally()
            try await harness.run(OrderService.allCases.map { $0.subscription(tally: tally) }) {
                try await harness.bus.publish(OrderPlaced(orderId: "1", userId: "456", amount: 100), to: OrderService.exchange)
                try await harness.waitUntilHandled(3)
            }
            #expect(tally.counts == ["payment": 1, "inventory": 1, "notification": 1])
            #expect(
                Set(harness.handled.map(\.queue))
                    == Set(OrderService.allCases.map { EventTopology.serviceQueue(exchange: OrderService.exchange, service: $0.rawValue) }))
            #expect(harness.handled.allSatisfy { $0.outcome == .succeeded && $0.type == "OrderPlaced" })
        }
    }

    @Test("a service that was down catches up from its durable queue, in order")
    func catchUp() async throws {
        try await EventTestHarness.withHarness { harness in
            let tally = Tally()
            let notification = OrderService.notification.subscription(tally: tally)
            // Declared (as `order-events place` does) but not running while the orders come.
            try await harness.bus.declare(notification)
            let orders = (1...5).map { OrderPlaced(orderId: "\($0)", userId: "u", amount: $0) }
            try await harness.bus.publish(orders, to: OrderService.exchange)
            #expect(harness.broker.messageCount(of: notification.queue!) == 5)
            try await harness.run([notification]) { try await harness.waitUntilHandled(5) }
            #expect(tally.counts["notification"] == 5)
            #expect(harness.published.map(\.metadata.messageID) == harness.handled.map(\.messageID))
        }
    }
}
