import AMQPEvents
import SampleSupport
import Synchronization

/// The services of the food-delivery system, as subscriptions. Each prints one line per event it
/// handles, with `orderId=`, and records it in the tally (once per id: a redelivery counts once).
/// What the lines show of an event is the sender's text: printed escaped.
struct FoodServices: Sendable {
    let tally: Tally
    /// How long a chef takes per item.
    var cookTime: Duration = .milliseconds(5)
    /// When set, only orders whose id starts with it are counted (a demo ignores what earlier
    /// runs left in the durable queues).
    var runPrefix: String?

    /// Records that `service` handled `id` of `orderId`; `false` when it did already, or when the
    /// order is not this run's.
    func record(_ service: String, _ orderId: String, _ id: String? = nil) -> Bool {
        if let runPrefix, !orderId.hasPrefix(runPrefix) { return false }
        return tally.record(service, id ?? orderId)
    }

    /// Confirms every order to the customer.
    var notification: EventSubscription {
        EventSubscription.publishSubscribe(exchange: Kitchen.exchange, service: "notification")
            .on(FoodOrderPlaced.self) { order, _ in
                guard record("notification", order.orderId) else { return }
                print(" [notification] confirmed order to customer \(printable(order.customerId)) orderId=\(printable(order.orderId))")
            }
    }

    /// Turns each order into one preparation task per item, on the chefs' work queue.
    var kitchenOrders: EventSubscription {
        EventSubscription.publishSubscribe(exchange: Kitchen.exchange, service: "kitchen")
            .on(FoodOrderPlaced.self) { order, context in
                let tasks = order.items.map {
                    PrepareItem(orderId: order.orderId, itemId: $0.id, quantity: $0.quantity, tasksInOrder: order.items.count)
                }
                try await context.bus.send(tasks, toQueue: Kitchen.tasks)
                guard record("kitchen", order.orderId) else { return }
                print(" [kitchen] \(tasks.count) tasks queued orderId=\(printable(order.orderId))")
            }
    }

    /// Collects finished tasks; when the last one of an order is done, the order is ready.
    func kitchenBoard(_ board: KitchenBoard) -> EventSubscription {
        EventSubscription.workQueue(Kitchen.done)
            .on(ItemPrepared.self) { item, context in
                guard board.finished(item) else { return }
                try await context.bus.publish(OrderReady(orderId: item.orderId), to: Kitchen.exchange)
                guard record("ready", item.orderId) else { return }
                print(" [kitchen] order ready orderId=\(printable(item.orderId))")
            }
    }

    /// A chef: one task at a time (prefetch 1), so the broker gives the next task to whoever is free.
    func chef(_ name: String) -> EventSubscription {
        EventSubscription.workQueue(Kitchen.tasks, concurrency: 1, prefetch: 1)
            .on(PrepareItem.self) { task, context in
                try await Task.sleep(for: cookTime * task.quantity)  // cooking
                try await context.bus.send(
                    ItemPrepared(orderId: task.orderId, itemId: task.itemId, chef: name, tasksInOrder: task.tasksInOrder),
                    toQueue: Kitchen.done)
                _ = record("cooked", task.orderId, "\(task.orderId)/\(task.itemId)")
                _ = record("chef \(name)", task.orderId, "\(task.orderId)/\(task.itemId)")
                print(" [chef \(name)] cooked \(task.quantity) x \(printable(task.itemId)) orderId=\(printable(task.orderId))")
            }
    }

    /// Asks the dispatcher for a driver for every ready order, then sends it out.
    var delivery: EventSubscription {
        EventSubscription.publishSubscribe(exchange: Kitchen.exchange, service: "delivery", concurrency: 8)
            .on(OrderReady.self) { ready, context in
                let driver = try await context.bus.request(FindDriver(orderId: ready.orderId), to: Kitchen.dispatcher)
                try await context.bus.publish(
                    OrderOutForDelivery(orderId: ready.orderId, driver: driver.driver), to: Kitchen.exchange)
                guard record("delivery", ready.orderId) else { return }
                print(" [delivery] \(printable(driver.driver)) picked up orderId=\(printable(ready.orderId))")
            }
    }

    /// Answers FindDriver requests.
    func dispatch(_ request: FindDriver) -> DriverAssigned {
        let drivers = ["Ana", "Ben", "Chloe", "Dev"]
        let driver = drivers[abs(request.orderId.hashValue) % drivers.count]
        if record("dispatcher", request.orderId) {
            print(" [dispatcher] assigned \(driver) orderId=\(printable(request.orderId))")
        }
        return DriverAssigned(orderId: request.orderId, driver: driver)
    }

    /// Live status, while it runs: a transient subscriber (its queue goes when it stops).
    var status: EventSubscription {
        EventSubscription.broadcast(exchange: Kitchen.exchange)
            .on(FoodOrderPlaced.self) { order, _ in
                _ = record("status", order.orderId, "\(order.orderId)/placed")
                print(" [status] placed orderId=\(printable(order.orderId))")
            }
            .on(OrderReady.self) { ready, _ in
                _ = record("status", ready.orderId, "\(ready.orderId)/ready")
                print(" [status] ready orderId=\(printable(ready.orderId))")
            }
            .on(OrderOutForDelivery.self) { out, _ in
                _ = record("status", out.orderId, "\(out.orderId)/out")
                print(" [status] out for delivery with \(printable(out.driver)) orderId=\(printable(out.orderId))")
            }
    }
}

extension FoodServices {
    /// The system's AsyncAPI document: who publishes, sends, requests and handles what.
    static func contract() throws -> AsyncAPIDocument {
        let services = FoodServices(tally: Tally())
        var document = AsyncAPIDocument(
            title: "Food delivery", version: "1.0.0",
            description: """
                Seed 002: orders fan out to the kitchen and notification services; the kitchen splits each into tasks that \
                chefs share on a work queue; ready orders get a driver from the dispatcher by request/reply; a transient \
                status subscriber prints live updates.
                """)
        try document.publishes(FoodOrderPlaced.self, to: Kitchen.exchange, by: "order-service")
        try document.subscribes(services.notification, as: "notification-service")
        try document.subscribes(services.kitchenOrders, as: "kitchen")
        try document.sends(PrepareItem.self, toQueue: Kitchen.tasks, by: "kitchen")
        try document.subscribes(services.chef("any"), as: "chef")
        try document.sends(ItemPrepared.self, toQueue: Kitchen.done, by: "chef")
        try document.subscribes(services.kitchenBoard(KitchenBoard()), as: "kitchen-board")
        try document.publishes(OrderReady.self, to: Kitchen.exchange, by: "kitchen")
        try document.subscribes(services.delivery, as: "delivery-service")
        try document.requests(FindDriver.self, to: Kitchen.dispatcher, by: "delivery-service")
        try document.responds(to: Kitchen.dispatcher, with: FindDriver.self, as: "dispatcher")
        try document.publishes(OrderOutForDelivery.self, to: Kitchen.exchange, by: "delivery-service")
        try document.subscribes(services.status, as: "status")
        return document
    }
}

/// Which tasks of each order are done (kept by the kitchen process).
final class KitchenBoard: Sendable {
    private let done = Mutex<[String: Set<String>]>([:])

    /// Records a finished task; returns `true` once, when it was the order's last.
    func finished(_ item: ItemPrepared) -> Bool {
        done.withLock { done in
            guard done[item.orderId]?.contains("*") != true else { return false }  // ready already
            done[item.orderId, default: []].insert(item.itemId)
            guard done[item.orderId]!.count >= item.tasksInOrder else { return false }
            done[item.orderId] = ["*"]
            return true
        }
    }
}
