#if SQLite
import AMQPClient
import AMQPEvents
import AMQPEventsSQLite
import Foundation
import GRDB
import Synchronization
import Testing

// With the SQLite trait (scripts/test.sh enables it): the inbox and the outbox.
extension FailureHandlingTests {
    @Test("with the email service down while orders are placed, it catches up: N emails, none lost, none twice (SQLite inbox)")
    func downServiceCatchesUp() async throws {
        let total = 50
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("events-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try SQLiteEventStore(path: directory.appendingPathComponent("email.sqlite").path)
        try await store.database.write { db in try db.execute(sql: "CREATE TABLE emails (order_id TEXT PRIMARY KEY)") }
        try await withEventBus { bus, domain, queues in
            let email = EventSubscription.publishSubscribe(exchange: domain, service: "email")
                .on(Charged.self) { charge, context in
                    try await store.handleOnce(context) { db in
                        try db.execute(sql: "INSERT INTO emails (order_id) VALUES (?)", arguments: [charge.orderId])
                    }
                }
            queues.withLock { $0.append(email.queue!) }
            try await bus.declare(email)
            let sent = try await bus.publish((0..<total).map { Charged(orderId: "e-\($0)", amount: $0) }, to: domain)
            // Some published twice (a producer that lost its confirms): the inbox absorbs them.
            for metadata in sent.prefix(5) {
                try await bus.publish(encoded: Array(#"{"orderId":"\#(metadata.messageID)","amount":0}"#.utf8), metadata: metadata, to: domain)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run(email) }
                try await withTimeout(20, "every email") {
                    while try await store.database.read({ try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM emails") ?? 0 }) < total {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                // The duplicates are settled too.
                _ = try await withTestConnection { admin in
                    try await admin.openChannel().waitForQueue(email.queue!, within: 10, "the duplicates to be settled") {
                        $0.messageCount == 0
                    }
                }
                group.cancelAll()
            }
            let emails = try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM emails") ?? 0 }
            print("catch-up: published \(total) (+5 again), emails \(emails), lost \(total - emails)")
            #expect(emails == total)
        }
    }
}

/// The bookstore sample's services as processes, killed on purpose.
@Suite(
    "Events: crashes (the bookstore sample's processes)",
    .enabled(if: Requirements.met(SampleTests.samplesBuilt), "needs the samples built: swift build --package-path Examples"))
struct CrashTests {
    /// The sample's event, as any other service would declare it.
    struct BookOrder: AMQPEvent {
        static let eventType = "OrderPlaced"
        struct Item: Codable, Sendable {
            var isbn: String
            var quantity: Int
        }
        var orderId: String
        var customerId: String
        var items: [Item]
    }

    /// Runs `body` with a domain of its own and a temporary folder; deletes the bookstore's queues after.
    func withBookstore(_ body: (_ exchange: String, _ directory: URL) async throws -> Void) async throws {
        let exchange = TestBroker.uniqueName("bookstore")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bookstore-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        func cleanUp() async {
            try? FileManager.default.removeItem(at: directory)
            try? await withTestConnection { admin in
                let channel = try await admin.openChannel()
                for service in ["inventory", "payment", "email"] {
                    let queue = "\(exchange).\(service)"
                    for name in [queue, EventTopology.parkingLot(of: queue)] + (1...4).map({ EventTopology.retryQueue(of: queue, step: $0) }) {
                        _ = try? await channel.deleteQueue(name)
                    }
                }
                try? await channel.deleteExchange(exchange)
            }
        }
        do {
            try await body(exchange, directory)
            await cleanUp()
        } catch {
            await cleanUp()
            throw error
        }
    }

    /// Waits (bounded) for a sample process to exit; returns its output lines.
    func finish(_ process: Process, _ output: Pipe, within seconds: Double = 60) async throws -> [String] {
        // Read while it runs, so that a full pipe never stalls it.
        let reading = Task.detached { output.fileHandleForReading.readDataToEndOfFile() }
        try await withTimeout(seconds, "\(process.arguments?.first ?? "the sample") to exit") {
            while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        }
        let data = await reading.value
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// Waits until `queue` exists and has a consumer.
    func waitForConsumer(on queue: String) async throws {
        try await withTestConnection { admin in
            try await withTimeout(30, "a consumer on \(queue)") {
                while true {
                    let channel = try await admin.openChannel()
                    let info = try? await channel.declareQueue(queue, passive: true)
                    await channel.close()
                    if let info, info.consumerCount > 0 { return }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
    }

    @Test("the email service killed (process exit) in the middle of handling, restarted: nothing lost, no email twice")
    func consumerCrash() async throws {
        let total = 20
        try await withBookstore { exchange, directory in
            let db = directory.appendingPathComponent("email.sqlite").path
            let (first, firstOutput) = try SampleTests.launch(
                "bookstore", "email", "--exchange", exchange, "--db", db, "--crash-after", "5")
            try await waitForConsumer(on: "\(exchange).email")
            try await withEventBus { bus, _, _ in
                let orders = (1...total).map { BookOrder(orderId: "o-\($0)", customerId: "c", items: [.init(isbn: "1", quantity: 1)]) }
                try await bus.publish(orders, to: exchange)
            }
            let firstLines = try await finish(first, firstOutput)
            #expect(first.terminationStatus == 3)  // it crashed, after the 5th email and before its ack

            let (second, secondOutput) = try SampleTests.launch(
                "bookstore", "email", "--exchange", exchange, "--db", db, "--count", "\(total - 5)")
            let secondLines = try await finish(second, secondOutput)
            #expect(second.terminationStatus == 0)

            let emails = (firstLines + secondLines).filter { $0.hasPrefix(" [x] email sent for orderId=") }
            let distinct = Set(emails)
            print("consumer crash: published \(total), emails before the crash \(firstLines.filter { $0.hasPrefix(" [x]") }.count), after \(secondLines.filter { $0.hasPrefix(" [x]") }.count), distinct \(distinct.count), lost \(total - distinct.count), twice \(emails.count - distinct.count)")
            #expect(distinct.count == total)
            #expect(emails.count == total)
        }
    }

    @Test("the order service killed between the commit and the publish: the relay publishes every committed order, once")
    func outboxCrash() async throws {
        let total = 20
        try await withBookstore { exchange, directory in
            let db = directory.appendingPathComponent("orders.sqlite").path
            let (order, orderOutput) = try SampleTests.launch(
                "bookstore", "order", "--exchange", exchange, "--db", db, "--count", "\(total)", "--crash-after-commit")
            let orderLines = try await finish(order, orderOutput)
            #expect(order.terminationStatus == 3)
            #expect(orderLines.filter { $0.contains("placed (committed)") }.count == total)
            let inventory = "\(exchange).inventory"
            let unpublished = try await withTestConnection { admin in
                try await admin.openChannel().declareQueue(inventory, passive: true).messageCount
            }
            #expect(unpublished == 0)

            let (relay, relayOutput) = try SampleTests.launch("bookstore", "relay", "--db", db)
            let relayLines = try await finish(relay, relayOutput)
            #expect(relay.terminationStatus == 0)
            #expect(relayLines.contains(" [relay] published \(total) events from the outbox"))
            let (again, againOutput) = try SampleTests.launch("bookstore", "relay", "--db", db)
            let againLines = try await finish(again, againOutput)
            #expect(againLines.contains(" [relay] published 0 events from the outbox"))

            // Every committed order reached the inventory service's queue, once.
            let received = try await withTestConnection { admin in
                let channel = try await admin.openChannel()
                try await channel.waitForQueue(inventory, within: 10, "the relayed orders") { $0.messageCount >= UInt32(total) }
                var ids: [String] = []
                while let message = try await channel.get(from: inventory, noAck: true) {
                    ids.append(try JSONEventCoder().decode(BookOrder.self, from: message.body).orderId)
                }
                return ids
            }
            print("outbox crash: committed \(total), published by the relay \(received.count), distinct \(Set(received).count), lost \(total - Set(received).count)")
            #expect(Set(received).count == total)
            #expect(received.count == total)
        }
    }
}
#endif
