import AMQPClient
import AMQPEvents
import ArgumentParser
import Logging
import SampleSupport
import ServiceLifecycle

/// Seed 001: an order service emits `OrderPlaced`; payment, inventory and notification react
/// independently, each on its own durable queue.
@main
struct OrderEvents: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "order-events",
        abstract: "OrderPlaced fanned out to payment, inventory and notification services.",
        subcommands: [Place.self, Payment.self, Inventory.self, Notification.self, Demo.self, WriteAsyncAPI.self])
}

struct Place: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Place orders: publish OrderPlaced events.")

    @OptionGroup var options: CommonOptions

    @Option(help: "How many orders to place.")
    var count = 1

    @Option(help: "The first order's id; the next ones count up.")
    var firstOrderId = 1

    @Option(help: "The envelope: amqp, cloudevents-binary or cloudevents-structured.")
    var envelope = EventEnvelope.amqp

    @Option(help: "The schema version of OrderPlaced to publish (1, as the seed, or 2).")
    var schemaVersion = OrderPlaced.schemaVersion

    func run() async throws {
        let (envelope, schemaVersion) = (self.envelope, self.schemaVersion)
        guard (1...OrderPlaced.schemaVersion).contains(schemaVersion) else {
            throw ValidationError("--schema-version must be 1 or \(OrderPlaced.schemaVersion)")
        }
        try await withEventBus(options, name: "order-service") { bus in
            // Declared first, so that orders placed before a service ever ran wait in its queue.
            for service in OrderService.allCases { try await bus.declare(service.subscription(tally: Tally())) }
            for index in 0..<count {
                let order = OrderPlaced(orderId: "\(firstOrderId + index)", userId: "\(456 + index % 10)", amount: 100 + index)
                let sent =
                    if schemaVersion == 1 {
                        try await bus.publish(
                            OrderPlacedV1(orderId: order.orderId, userId: order.userId, amount: order.amount),
                            to: OrderService.exchange, envelope: envelope)
                    } else {
                        try await bus.publish(order, to: OrderService.exchange, envelope: envelope)
                    }
                print(" [order] placed orderId=\(order.orderId) messageId=\(sent.messageID) envelope=\(envelope.rawValue) v\(schemaVersion)")
            }
        }
    }
}

/// Runs one service until Ctrl-C (or `--count` orders).
struct ServiceOptions: ParsableArguments {
    @OptionGroup var options: CommonOptions

    @Option(help: "Exit after this many orders (default: run until Ctrl-C).")
    var count: Int?

    @Option(help: "How many orders to handle at once.")
    var concurrency = 1

    func run(_ service: OrderService) async throws {
        let concurrency = self.concurrency
        try await runEventService(
            options, name: "\(service.rawValue)-service", waitingFor: "orders in orders.\(service.rawValue)",
            counted: service.rawValue, count: count
        ) { bus, tally in
            var subscription = service.subscription(tally: tally)
            subscription.concurrency = concurrency
            return [bus.service(for: subscription)]
        }
    }
}

struct Payment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The payment service: charges every order.")
    @OptionGroup var service: ServiceOptions
    func run() async throws { try await service.run(.payment) }
}

struct Inventory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The inventory service: reserves stock for every order.")
    @OptionGroup var service: ServiceOptions
    func run() async throws { try await service.run(.inventory) }
}

struct Notification: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The notification service: confirms every order.")
    @OptionGroup var service: ServiceOptions
    func run() async throws { try await service.run(.notification) }
}

/// Every service in one process. The notification service is down while the first half of the
/// orders is placed, then starts and catches up from its queue.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the whole system once and check every service handled every order.")

    @OptionGroup var options: CommonOptions

    @Option(help: "How many orders to place.")
    var orders = 100

    @Option(help: "How long to wait for the services, in seconds.")
    var timeout = 60

    func run() async throws {
        let orders = self.orders
        try await withEventBus(options, name: "order-events-demo") { bus in
            let tally = Tally()
            // Each run's order ids are new, so queues left over from an earlier run do not count.
            let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
            let subscriptions = OrderService.allCases.map { ($0, $0.subscription(tally: tally, runPrefix: "\(runID)-")) }
            for (_, subscription) in subscriptions { try await bus.declare(subscription) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (service, subscription) in subscriptions where service != .notification {
                    group.addTask { try await bus.run(subscription) }
                }
                let half = orders / 2
                try await place(range: 0..<half, runID: runID, on: bus)
                print(" [demo] notification service starts now, after \(half) orders")
                group.addTask { try await bus.run(subscriptions.first { $0.0 == .notification }!.1) }
                try await place(range: half..<orders, runID: runID, on: bus)

                let done = await tally.wait(upTo: .seconds(timeout)) { counts in
                    OrderService.allCases.allSatisfy { counts[$0.rawValue, default: 0] >= orders }
                }
                group.cancelAll()
                let counts = tally.counts
                let summary = OrderService.allCases.map { "\($0.rawValue)=\(counts[$0.rawValue, default: 0])" }.joined(separator: " ")
                if done {
                    print("demo: OK orders=\(orders) \(summary) duplicates=\(tally.duplicates)")
                } else {
                    print("demo: FAILED within \(timeout) s: orders=\(orders) \(summary)")
                    throw ExitCode.failure
                }
            }
        }
    }

    private func place(range: Range<Int>, runID: String, on bus: EventBus) async throws {
        let batch = range.map { OrderPlaced(orderId: "\(runID)-\($0 + 1)", userId: "\(456 + $0 % 10)", amount: 100 + $0) }
        try await bus.publish(batch, to: OrderService.exchange)
        for order in batch { print(" [order] placed orderId=\(order.orderId)") }
    }
}

/// Writes the system's AsyncAPI 3.0 document.
struct WriteAsyncAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "asyncapi", abstract: "Write the system's AsyncAPI 3.0 document (JSON) to stdout.")

    func run() throws {
        print(try OrderService.contract().jsonText())
    }
}
