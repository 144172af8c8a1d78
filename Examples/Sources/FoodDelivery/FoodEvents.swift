import AMQPEvents

/// The seed's order: `{orderId, customerId, items: [{id, quantity}], totalPrice}`.
struct FoodOrderPlaced: AMQPEvent {
    static let eventType = "FoodOrderPlaced"
    struct Item: Codable, Sendable {
        var id: String
        var quantity: Int
    }
    var orderId: String
    var customerId: String
    var items: [Item]
    var totalPrice: Double
}

/// One preparation task per item, on the kitchen's work queue.
struct PrepareItem: AMQPEvent {
    static let eventType = "PrepareItem"
    var orderId: String
    var itemId: String
    var quantity: Int
    /// How many tasks the order has: the kitchen knows when the last one is done.
    var tasksInOrder: Int
}

/// A chef finished a task.
struct ItemPrepared: AMQPEvent {
    static let eventType = "ItemPrepared"
    var orderId: String
    var itemId: String
    var chef: String
    var tasksInOrder: Int
}

/// Every item of an order is ready.
struct OrderReady: AMQPEvent {
    static let eventType = "OrderReady"
    var orderId: String
}

/// A driver took the order.
struct OrderOutForDelivery: AMQPEvent {
    static let eventType = "OrderOutForDelivery"
    var orderId: String
    var driver: String
}

/// Delivery asks the dispatcher for a driver (request/reply).
struct FindDriver: AMQPRequest {
    typealias Response = DriverAssigned
    static let eventType = "FindDriver"
    var orderId: String
}

struct DriverAssigned: AMQPEvent {
    static let eventType = "DriverAssigned"
    var orderId: String
    var driver: String
}

/// Names the services share.
enum Kitchen {
    /// The domain exchange of the food-delivery system.
    static let exchange = "food"
    /// Preparation tasks, shared by the chefs.
    static let tasks = "kitchen.tasks"
    /// Finished tasks, back to the kitchen.
    static let done = "kitchen.done"
    /// The dispatcher's request queue.
    static let dispatcher = "dispatcher.requests"
}
