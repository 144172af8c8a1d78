import AMQPEvents
import AMQPEventsSQLite
import AMQPEventsTesting
@testable import Bookstore
import Foundation
import SampleSupport
import Testing

/// Seed 004's bookstore, unit-tested on the in-memory broker: the outbox, the email service's
/// retries on the test's clock, and its parking lot.
@Suite("Samples: bookstore on the test harness")
struct BookstoreTests {
    @Test("orders placed through the outbox reach inventory, payment and email; the email is sent once")
    func outboxToServices() async throws {
        try await withStores { orders, emails in
            try await EventTestHarness.withHarness { harness in
                let tally = Tally()
                let bookstore = Bookstore()
                let relay = OutboxRelay(store: orders, bus: harness.bus, pollInterval: .milliseconds(10))
                try await harness.run({ _, parts in
                    parts.subscribe(bookstore.inventory(tally: tally))
                    parts.subscribe(bookstore.payment(tally: tally))
                    parts.subscribe(bookstore.email(store: emails, tally: tally, failureRate: 0, failOrder: nil))
                    parts.run(relay)
                }) {
                    for index in 1...3 { try await bookstore.place(Bookstore.sampleOrder("b-\(index)", index), in: orders) }
                    relay.wakeUp()
                    try await harness.waitUntilHandled(9)
                    // The relay marks its rows published once the broker confirmed them, which
                    // may be after the handlers ran.
                    try await harness.waitUntil("the relay marked every row published") { try await orders.pendingCount() == 0 }
                }
                #expect(tally.counts == ["inventory": 3, "payment": 3, "email": 3])
                #expect(try harness.published(BookOrderPlaced.self).map(\.orderId) == ["b-1", "b-2", "b-3"])
                let sent = try await emails.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM emails_sent") }
                #expect(sent == 3)
            }
        }
    }

    @Test("the email service retries a failing order after each delay, then parks it with why")
    func emailRetriesThenParks() async throws {
        try await withStores { _, emails in
            try await EventTestHarness.withHarness { harness in
                let tally = Tally()
                var bookstore = Bookstore()
                bookstore.emailRetry.jitter = 0  // each delay exact, so the test can step just short of it
                let email = bookstore.email(store: emails, tally: tally, failureRate: 0, failOrder: "b-2")
                try await harness.run([email]) {
                    try await harness.bus.publish(Bookstore.sampleOrder("b-1", 1), to: bookstore.exchange)
                    try await harness.bus.publish(Bookstore.sampleOrder("b-2", 2), to: bookstore.exchange)
                    // The first delivery (its immediate retry included: the harness sees a delivery once).
                    try await harness.waitUntil("b-2 failed") { failures(harness) == 1 }
                    for (step, delay) in bookstore.emailRetry.delays.enumerated() {
                        try await harness.advance(by: delay - .milliseconds(1))
                        #expect(failures(harness) == step + 1, "no retry before its delay")
                        try await harness.advance(by: .milliseconds(1))
                        try await harness.waitUntil("delayed retry \(step + 1)") { failures(harness) == step + 2 }
                    }
                    let parked = try await harness.waitUntilParked(1, in: bookstore.emailQueue)
                    #expect(parked.map(\.reason) == ["retriesExhausted"])
                    #expect(parked.first?.error?.contains("orderId=b-2") == true)
                }
                let attempts = harness.handled.filter { $0.outcome != .succeeded }.map(\.retryAttempt)
                print("bookstore email: deliveries of b-2 by retry attempt \(attempts), emails \(tally.counts["email", default: 0])")
                #expect(attempts == Array(0...bookstore.emailRetry.delays.count), "the first delivery, then one per delay")
                #expect(harness.retried.count == bookstore.emailRetry.delays.count)
                #expect(tally.counts["email"] == 1)
            }
        }
    }

    private func failures(_ harness: EventTestHarness) -> Int {
        harness.handled.filter { $0.outcome != .succeeded }.count
    }

    /// Two SQLite stores in a directory of their own, removed afterwards.
    private func withStores(_ body: (SQLiteEventStore, SQLiteEventStore) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bookstore-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let orders = try Bookstore.openStore(path: directory.appendingPathComponent("orders.sqlite").path, appID: "order-service")
        let emails = try Bookstore.openStore(path: directory.appendingPathComponent("email.sqlite").path, appID: "email")
        try await body(orders, emails)
    }
}
