import AMQPClient
import AMQPEvents
import AMQPEventsSQLite
import ArgumentParser
import Foundation
import SampleSupport

/// The seed's story in one process: orders placed while the email service is down; inventory and
/// payment handle them at once; the email service starts later and catches up, retrying failed
/// sends with backoff; an order whose email always fails ends in the parking lot.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the bookstore's story once and check it.")

    @OptionGroup var options: CommonOptions

    @Option(help: "How many orders to place.")
    var orders = 100

    @Option(help: "The fraction of email sends that fail (transient).")
    var failureRate = 0.0

    @Option(help: "The number of the order (1, 2, …) whose email always fails.")
    var failOrder: Int?

    @Option(help: "How long to wait for the services, in seconds.")
    var timeout = 120

    func run() async throws {
        let (orders, failureRate, failOrder, timeout) = (orders, failureRate, failOrder, timeout)
        try await withEventBus(options, name: "bookstore-demo") { bus in
            let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
            // A domain of its own: the demo leaves nothing behind in the real `order_events`.
            var bookstore = Bookstore()
            bookstore.exchange = "order_events.demo-\(runID)"
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bookstore-demo-\(runID)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let orderStore = try Bookstore.openStore(path: directory.appendingPathComponent("orders.sqlite").path, appID: "order-service")
            let emailStore = try Bookstore.openStore(path: directory.appendingPathComponent("email.sqlite").path, appID: "email")

            let tally = Tally()
            let failing = failOrder.map { "\(runID)-\($0)" }
            let inventory = bookstore.inventory(tally: tally)
            let payment = bookstore.payment(tally: tally)
            let email = bookstore.email(store: emailStore, tally: tally, failureRate: failureRate, failOrder: failing)
            for subscription in [inventory, payment, email] { try await bus.declare(subscription) }
            let relay = OutboxRelay(store: orderStore, bus: bus, pollInterval: .milliseconds(100))

            var outcome: (ok: Bool, parked: Int) = (false, 0)
            do {
                outcome = try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await relay.run() }
                    group.addTask { try await bus.run(inventory) }
                    group.addTask { try await bus.run(payment) }
                    print(" [demo] the email service is down while \(orders) orders are placed")
                    for index in 1...max(orders, 1) {
                        let order = Bookstore.sampleOrder("\(runID)-\(index)", index)
                        try await bookstore.place(order, in: orderStore)
                        print(" [order] placed orderId=\(order.orderId)")
                    }
                    relay.wakeUp()
                    var ok = await tally.wait(upTo: .seconds(timeout)) {
                        $0["inventory", default: 0] >= orders && $0["payment", default: 0] >= orders
                    }
                    print(" [demo] inventory and payment are done; the email service starts now")
                    group.addTask { try await bus.run(email) }
                    let expectedParked = failOrder.map { (1...orders).contains($0) ? 1 : 0 } ?? 0
                    let emailed = await tally.wait(upTo: .seconds(timeout)) { $0["email", default: 0] >= orders - expectedParked }
                    ok = ok && emailed
                    // The failing order goes through every delayed retry before it is parked.
                    var parked = 0
                    let deadline = ContinuousClock.now + .seconds(timeout)
                    while ok && ContinuousClock.now < deadline {
                        parked = try await bus.parkedMessages(of: bookstore.emailQueue, limit: 1000).count
                        if parked >= expectedParked { break }
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    group.cancelAll()
                    return (ok && parked == expectedParked, parked)
                }
            } catch {
                await removeTopology(bookstore, bus: bus)
                throw error
            }
            await removeTopology(bookstore, bus: bus)

            let counts = tally.counts
            let pending = try await orderStore.pendingCount()
            let summary =
                "orders=\(orders) inventory=\(counts["inventory", default: 0]) payment=\(counts["payment", default: 0]) "
                + "emails=\(counts["email", default: 0]) retries=\(counts["failures", default: 0]) parked=\(outcome.parked) "
                + "unpublished=\(pending) duplicates=\(tally.duplicates)"
            if outcome.ok && pending == 0 && tally.duplicates == 0 {
                print("demo: OK \(summary)")
            } else {
                print("demo: FAILED within \(timeout) s: \(summary)")
                throw ExitCode.failure
            }
        }
    }

    private func removeTopology(_ bookstore: Bookstore, bus: EventBus) async {
        guard let channel = try? await bus.connection.openChannel() else { return }
        for queue in [bookstore.inventoryQueue, bookstore.paymentQueue, bookstore.emailQueue] {
            var names = [queue, EventTopology.parkingLot(of: queue)]
            names += (1...bookstore.emailRetry.delays.count).map { EventTopology.retryQueue(of: queue, step: $0) }
            for name in names { _ = try? await channel.deleteQueue(name) }
        }
        try? await channel.deleteExchange(bookstore.exchange)
        await channel.close()
    }
}
