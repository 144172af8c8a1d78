import AMQPEvents
import AMQPEventsTesting
@testable import FoodDelivery
import SampleSupport
import Testing

/// Seed 002's app, unit-tested on the in-memory broker: pub/sub, the chefs' work queue, and
/// request/reply to the dispatcher.
@Suite("Samples: food-delivery on the test harness")
struct FoodDeliveryTests {
    @Test("an order goes through the kitchen and two chefs to a driver, and the status subscriber sees each step")
    func orderToDriver() async throws {
        try await EventTestHarness.withHarness { harness in
            let tally = Tally()
            var services = FoodServices(tally: tally)
            services.cookTime = .zero
            let handlers = services
            try await harness.run({ _, parts in
                for subscription in [
                    handlers.notification, handlers.kitchenOrders, handlers.kitchenBoard(KitchenBoard()), handlers.delivery,
                    handlers.chef("Remy"), handlers.chef("Colette"), handlers.status,
                ] {
                    parts.subscribe(subscription)
                }
                parts.respond(to: Kitchen.dispatcher, with: FindDriver.self) { request, _ in handlers.dispatch(request) }
            }) {
                try await harness.bus.publish(sampleOrder("o-1", customer: 0), to: Kitchen.exchange)
                try await harness.waitUntil("the order is out for delivery and its status seen") {
                    tally.counts["delivery"] == 1 && tally.counts["status"] == 3
                }
            }
            #expect(tally.counts["notification"] == 1)
            #expect(tally.counts["cooked"] == 2, "one task per item")
            #expect(tally.counts["ready"] == 1)
            #expect(tally.counts["dispatcher"] == 1)
            #expect(tally.duplicates == 0)
            let published = harness.published.map(\.type)
            #expect(published.filter { $0 == "PrepareItem" }.count == 2)
            #expect(published.filter { $0 == "ItemPrepared" }.count == 2)
            #expect(published.contains("FindDriver"), "the driver is requested")
            let out = try harness.published(OrderOutForDelivery.self)
            #expect(out.map(\.orderId) == ["o-1"])
            // Everything the order caused carries its correlation id.
            let orderID = harness.published.first { $0.type == "FoodOrderPlaced" }?.metadata.messageID
            #expect(harness.published.allSatisfy { $0.metadata.correlationID == orderID })
        }
    }

    @Test("chefs share the kitchen's tasks: each task is cooked once, by one of them")
    func competingChefs() async throws {
        try await EventTestHarness.withHarness { harness in
            let tally = Tally()
            var services = FoodServices(tally: tally)
            services.cookTime = .milliseconds(1)
            try await harness.run([services.chef("Remy"), services.chef("Colette")]) {
                let tasks = (0..<20).map { PrepareItem(orderId: "o-\($0)", itemId: "pizza", quantity: 1, tasksInOrder: 1) }
                try await harness.bus.send(tasks, toQueue: Kitchen.tasks)
                try await harness.waitUntilHandled(20)
            }
            let byRemy = tally.counts["chef Remy", default: 0]
            let byColette = tally.counts["chef Colette", default: 0]
            print("food-delivery chefs: Remy \(byRemy), Colette \(byColette)")
            #expect(byRemy + byColette == 20)
            #expect(byRemy > 0 && byColette > 0, "prefetch 1: a busy chef's next task goes to the other")
            #expect(tally.duplicates == 0)
        }
    }
}
