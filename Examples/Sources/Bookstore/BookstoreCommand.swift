import AMQPClient
import AMQPEvents
import AMQPEventsSQLite
import ArgumentParser
import Foundation
import SampleSupport
import ServiceLifecycle

/// Seed 003: an online bookstore. The order service stores each order and its `OrderPlaced` event
/// in one SQLite transaction (an outbox) and a relay publishes it; inventory, payment and email
/// react independently. If the email service is down, orders are still placed and inventory
/// updated; the emails go out when it is back, retried with backoff when sending fails, and an
/// order whose email can never be sent waits in the parking lot.
@main
struct BookstoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bookstore",
        abstract: "The seed's bookstore: an outbox, retries with backoff, a parking lot, exactly-once emails.",
        subcommands: [Order.self, Relay.self, Inventory.self, Payment.self, Email.self, Parked.self, Demo.self, WriteAsyncAPI.self])
}

struct StoreOptions: ParsableArguments {
    @Option(help: "The service's SQLite database (orders and outbox, or emails and handled ids).")
    var db: String = "bookstore.sqlite"
}

/// The bookstore's domain exchange, `order_events` unless told (tests use their own).
struct DomainOption: ParsableArguments {
    @Option(help: "The domain exchange.")
    var exchange = "order_events"

    var bookstore: Bookstore {
        var bookstore = Bookstore()
        bookstore.exchange = exchange
        return bookstore
    }
}

struct Order: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Place orders through the outbox, and publish them.")
    @OptionGroup var domain: DomainOption
    @OptionGroup var options: CommonOptions
    @OptionGroup var store: StoreOptions

    @Option(help: "How many orders to place.")
    var count = 1

    @Flag(help: "Exit abruptly after committing the orders, before publishing them (then run `relay`).")
    var crashAfterCommit = false

    func run() async throws {
        let (count, crash, path, bookstore) = (count, crashAfterCommit, store.db, domain.bookstore)
        try await withEventBus(options, name: "order-service") { bus in
            let store = try Bookstore.openStore(path: path, appID: "order-service")
            for subscription in [bookstore.inventory(tally: Tally()), bookstore.payment(tally: Tally())] {
                try await bus.declare(subscription)
            }
            try await bus.declare(bookstore.email(store: store, tally: Tally(), failureRate: 0, failOrder: nil))
            let prefix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
            for index in 1...max(count, 1) {
                let order = Bookstore.sampleOrder("\(prefix)-\(index)", index)
                try await bookstore.place(order, in: store)
                print(" [order] placed (committed) orderId=\(order.orderId)")
            }
            if crash {
                print(" [order] crashing on purpose before publishing")
                Foundation.exit(3)
            }
            let published = try await OutboxRelay(store: store, bus: bus).publishPending()
            print(" [order] published \(published) events from the outbox")
        }
    }
}

struct Relay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish what the order service's outbox still holds, then exit.")
    @OptionGroup var options: CommonOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let path = store.db
        try await withEventBus(options, name: "outbox-relay") { bus in
            let store = try Bookstore.openStore(path: path, appID: "order-service")
            let published = try await OutboxRelay(store: store, bus: bus).publishPending()
            print(" [relay] published \(published) events from the outbox")
        }
    }
}

/// Options of a long-running service.
struct ServiceRun: ParsableArguments {
    @OptionGroup var options: CommonOptions

    @Option(help: "Exit after this many orders (default: run until Ctrl-C).")
    var count: Int?
}

struct Inventory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Reserve the books of every order.")
    @OptionGroup var domain: DomainOption
    @OptionGroup var run: ServiceRun

    func run() async throws {
        let bookstore = domain.bookstore
        try await runEventService(run.options, name: "inventory", waitingFor: "orders", counted: "inventory", count: run.count) {
            bus, tally in [bus.service(for: bookstore.inventory(tally: tally))]
        }
    }
}

struct Payment: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Charge every order.")
    @OptionGroup var domain: DomainOption
    @OptionGroup var run: ServiceRun

    func run() async throws {
        let bookstore = domain.bookstore
        try await runEventService(run.options, name: "payment", waitingFor: "orders", counted: "payment", count: run.count) {
            bus, tally in [bus.service(for: bookstore.payment(tally: tally))]
        }
    }
}

struct Email: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send each order's confirmation email, exactly once.")
    @OptionGroup var domain: DomainOption
    @OptionGroup var run: ServiceRun
    @OptionGroup var store: StoreOptions

    @Option(help: "The fraction of sends that fail (transient; retried with backoff).")
    var failureRate = 0.0

    @Option(help: "An order id whose email always fails (permanent; it ends in the parking lot).")
    var failOrder: String?

    @Option(help: "Exit abruptly after sending this many emails, before acknowledging the last (a crash).")
    var crashAfter: Int?

    func run() async throws {
        let (path, rate, failOrder, crashAfter) = (store.db, failureRate, failOrder, crashAfter)
        let bookstore = domain.bookstore
        try await runEventService(run.options, name: "email", waitingFor: "orders", counted: "email", count: run.count) {
            bus, tally in
            let store = try Bookstore.openStore(path: path, appID: "email")
            return [
                bus.service(
                    for: bookstore.email(store: store, tally: tally, failureRate: rate, failOrder: failOrder, crashAfter: crashAfter))
            ]
        }
    }
}

struct Parked: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the email service's parked messages, or replay them.")
    @OptionGroup var domain: DomainOption
    @OptionGroup var options: CommonOptions

    @Flag(help: "Move them back to the email service's queue.")
    var replay = false

    @Option(help: "Only the message with this id (repeatable).")
    var id: [String] = []

    func run() async throws {
        let (replay, ids, bookstore) = (replay, id, domain.bookstore)
        try await withEventBus(options, name: "parking-lot") { bus in
            let queue = bookstore.emailQueue
            if replay {
                let moved = try await bus.replayParked(of: queue, messageIDs: ids.isEmpty ? nil : Set(ids))
                print(" [parked] moved \(moved) back to \(queue)")
                return
            }
            for message in try await bus.parkedMessages(of: queue, limit: 1000) {
                let order = try? JSONEventCoder().decode(BookOrderPlaced.self, from: message.body)
                // All of it came in the parked message: printed escaped.
                print(
                    " [parked] messageId=\(printable(message.messageID ?? "-")) orderId=\(printable(order?.orderId ?? "-")) reason=\(printable(message.reason ?? "-")) attempts=\(message.attempts.map(String.init) ?? "-") error=\(printable(message.error ?? "-", limit: 1024))"
                )
            }
        }
    }
}

/// Writes the system's AsyncAPI 3.0 document.
struct WriteAsyncAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "asyncapi", abstract: "Write the system's AsyncAPI 3.0 document (JSON) to stdout.")

    func run() throws {
        print(try Bookstore().contract().jsonText())
    }
}
