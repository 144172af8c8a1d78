import AMQPEvents
import ArgumentParser
import Foundation
import SampleSupport
import ServiceLifecycle

/// Seed 002: an online food-delivery app. Orders fan out to the kitchen and notification services;
/// the kitchen splits each into tasks that chefs share on a work queue; ready orders get a driver
/// from the dispatcher by request/reply; a transient status subscriber prints live updates.
@main
struct FoodDelivery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "food-delivery",
        abstract: "The seed's food-delivery app: pub/sub, a kitchen work queue, request/reply, live status.",
        subcommands: [
            PlaceOrders.self, KitchenService.self, Chef.self, NotificationService.self, DeliveryService.self,
            Dispatcher.self, Status.self, Demo.self, WriteAsyncAPI.self,
        ])
}

/// A pizza and two sodas: two preparation tasks.
func sampleOrder(_ id: String, customer: Int) -> FoodOrderPlaced {
    FoodOrderPlaced(
        orderId: id, customerId: "\(789 + customer % 10)",
        items: [.init(id: "pizza", quantity: 1), .init(id: "soda", quantity: 2)], totalPrice: 25.99)
}

struct PlaceOrders: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "order", abstract: "Place orders.")

    @OptionGroup var options: CommonOptions

    @Option(help: "How many orders to place.")
    var count = 1

    func run() async throws {
        let count = self.count
        try await withEventBus(options, name: "order-service") { bus in
            let services = FoodServices(tally: Tally())
            for subscription in [services.notification, services.kitchenOrders, services.delivery] {
                try await bus.declare(subscription)
            }
            let prefix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
            for index in 0..<count {
                let order = sampleOrder("\(prefix)-\(index + 1)", customer: index)
                try await bus.publish(order, to: Kitchen.exchange)
                print(" [order] placed pizza x1, soda x2 orderId=\(order.orderId)")
            }
        }
    }
}

/// Options of a long-running service.
struct ServiceRun: ParsableArguments {
    @OptionGroup var options: CommonOptions

    @Option(help: "Exit after this many events (default: run until Ctrl-C).")
    var count: Int?

    /// Runs the services `make` returns on a bus named `name` until Ctrl-C, or until `counted`
    /// reaches `--count`.
    func run(
        as name: String, waitingFor what: String, counted: String, cookTime: Duration? = nil,
        _ make: @escaping @Sendable (EventBus, FoodServices) -> [any Service]
    ) async throws {
        try await runEventService(options, name: name, waitingFor: what, counted: counted, count: count) { bus, tally in
            var services = FoodServices(tally: tally)
            if let cookTime { services.cookTime = cookTime }
            return make(bus, services)
        }
    }
}

struct KitchenService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kitchen", abstract: "Split orders into tasks; publish OrderReady.")
    @OptionGroup var run: ServiceRun

    func run() async throws {
        try await run.run(as: "kitchen", waitingFor: "orders", counted: "ready") { bus, services in
            [bus.service(for: services.kitchenOrders), bus.service(for: services.kitchenBoard(KitchenBoard()))]
        }
    }
}

struct Chef: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cook tasks from the kitchen's work queue (run several).")
    @OptionGroup var run: ServiceRun

    @Option(help: "The chef's name.")
    var name = "Remy"

    @Option(help: "Milliseconds per item cooked.")
    var cookMilliseconds = 20

    func run() async throws {
        let name = self.name
        try await run.run(
            as: "chef-\(name)", waitingFor: "tasks in \(Kitchen.tasks)", counted: "cooked", cookTime: .milliseconds(cookMilliseconds)
        ) { bus, services in
            [bus.service(for: services.chef(name))]
        }
    }
}

struct NotificationService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "notification", abstract: "Confirm every order to its customer.")
    @OptionGroup var run: ServiceRun

    func run() async throws {
        try await run.run(as: "notification", waitingFor: "orders", counted: "notification") { bus, services in
            [bus.service(for: services.notification)]
        }
    }
}

struct DeliveryService: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delivery", abstract: "Get a driver for every ready order.")
    @OptionGroup var run: ServiceRun

    func run() async throws {
        try await run.run(as: "delivery", waitingFor: "ready orders", counted: "delivery") { bus, services in
            [bus.service(for: services.delivery)]
        }
    }
}

struct Dispatcher: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Answer FindDriver requests (request/reply).")
    @OptionGroup var run: ServiceRun

    func run() async throws {
        try await run.run(as: "dispatcher", waitingFor: "requests in \(Kitchen.dispatcher)", counted: "dispatcher") { bus, services in
            [ResponderService(bus: bus, services: services)]
        }
    }
}

struct ResponderService: Service {
    let bus: EventBus
    let services: FoodServices

    func run() async throws {
        try await bus.respond(to: Kitchen.dispatcher, with: FindDriver.self, concurrency: 4) { request, _ in
            services.dispatch(request)
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print live status updates while it runs (nothing is kept for it).")
    @OptionGroup var run: ServiceRun

    func run() async throws {
        try await run.run(as: "status", waitingFor: "live updates", counted: "status") { bus, services in
            [bus.service(for: services.status)]
        }
    }
}

/// Every service in one process, `--chefs` chefs sharing the kitchen's tasks.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the whole app once and check every order went all the way.")

    @OptionGroup var options: CommonOptions

    @Option(help: "How many orders to place.")
    var orders = 50

    @Option(help: "How many chefs share the kitchen's tasks.")
    var chefs = 3

    @Option(help: "Milliseconds per item cooked.")
    var cookMilliseconds = 5

    @Option(help: "How long to wait for the services, in seconds.")
    var timeout = 120

    func run() async throws {
        let (orders, chefs, cook, timeout) = (self.orders, self.chefs, self.cookMilliseconds, self.timeout)
        guard chefs >= 1 else { throw ValidationError("--chefs must be at least 1") }
        try await withEventBus(options, name: "food-delivery-demo") { bus in
            let tally = Tally()
            let prefix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
            var services = FoodServices(tally: tally)
            services.cookTime = .milliseconds(cook)
            services.runPrefix = "\(prefix)-"
            let names = ["Remy", "Colette", "Linguini", "Skinner", "Emile", "Horst"]
            let chefNames = (0..<chefs).map { $0 < names.count ? names[$0] : "Chef\($0 + 1)" }
            let durable = [services.notification, services.kitchenOrders, services.kitchenBoard(KitchenBoard()), services.delivery]
                + chefNames.map(services.chef)
            for subscription in durable { try await bus.declare(subscription) }
            try await bus.declareResponder(queue: Kitchen.dispatcher)
            // The live status subscriber listens before the first order.
            let status = try await bus.start(services.status)

            let handlers = services
            try await withThrowingTaskGroup(of: Void.self) { group in
                for subscription in durable { group.addTask { try await bus.run(subscription) } }
                group.addTask { try await ResponderService(bus: bus, services: handlers).run() }
                group.addTask { try await status.run() }

                let batch = (0..<orders).map { sampleOrder("\(prefix)-\($0 + 1)", customer: $0) }
                try await bus.publish(batch, to: Kitchen.exchange)
                for order in batch { print(" [order] placed pizza x1, soda x2 orderId=\(order.orderId)") }

                let tasks = orders * 2
                let done = await tally.wait(upTo: .seconds(timeout)) { counts in
                    counts["notification", default: 0] >= orders && counts["cooked", default: 0] >= tasks
                        && counts["ready", default: 0] >= orders && counts["delivery", default: 0] >= orders
                        && counts["dispatcher", default: 0] >= orders && counts["status", default: 0] >= orders * 3
                }
                group.cancelAll()
                let counts = tally.counts
                let perChef = chefNames.map { "\($0)=\(counts["chef \($0)", default: 0])" }.joined(separator: " ")
                let everyChefCooked = chefNames.allSatisfy { counts["chef \($0)", default: 0] > 0 }
                let summary =
                    "orders=\(orders) notified=\(counts["notification", default: 0]) tasks=\(counts["cooked", default: 0])/\(tasks) "
                    + "(\(perChef)) ready=\(counts["ready", default: 0]) drivers=\(counts["dispatcher", default: 0]) "
                    + "delivered=\(counts["delivery", default: 0]) status=\(counts["status", default: 0]) duplicates=\(tally.duplicates)"
                if done && everyChefCooked && tally.duplicates == 0 {
                    print("demo: OK \(summary)")
                } else {
                    print("demo: FAILED within \(timeout) s: \(summary)")
                    throw ExitCode.failure
                }
            }
        }
    }
}

/// Writes the system's AsyncAPI 3.0 document.
struct WriteAsyncAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "asyncapi", abstract: "Write the system's AsyncAPI 3.0 document (JSON) to stdout.")

    func run() throws {
        print(try FoodServices.contract().jsonText())
    }
}
