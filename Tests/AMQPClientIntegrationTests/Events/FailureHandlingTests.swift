import AMQPClient
import AMQPEvents
import AMQPEventsSQLite
import Foundation
import GRDB
import Synchronization
import Testing

@Suite("Events: retries, the parking lot, deduplication, the outbox")
struct FailureHandlingTests {
    /// When each call of a handler happened, per order id.
    final class Calls: Sendable {
        private let times = Mutex<[String: [ContinuousClock.Instant]]>([:])

        /// Records a call; returns how many calls the id had before this one.
        func record(_ id: String) -> Int {
            times.withLock { times in
                times[id, default: []].append(.now)
                return times[id]!.count - 1
            }
        }

        func of(_ id: String) -> [ContinuousClock.Instant] { times.withLock { $0[id] ?? [] } }
        var total: Int { times.withLock { $0.values.reduce(0) { $0 + $1.count } } }
    }

    struct Transient: Error {}

    @Test(
        "a 30 % transient failure rate: every event handled exactly once, retried with growing delays, none parked",
        arguments: [EventQueueType.classic, .quorum(deliveryLimit: 20)])
    func transientFailures(queueType: EventQueueType) async throws {
        let total = 60
        try await withEventBus { bus, domain, queues in
            let calls = Calls()
            let handled = Seen()
            let retryCountMismatches = Seen()
            var configured = EventSubscription.publishSubscribe(exchange: domain, service: "email")
                .retrying(.exponential(immediateRetries: 0, first: .milliseconds(100), multiplier: 3, steps: 4, jitter: 0.2))
                .on(Charged.self) { charge, context in
                    // Orders 0, 1, 2 of every 10 fail their first 1, 2 or 3 calls.
                    let failures = charge.amount % 10 < 3 ? 1 + charge.amount % 3 : 0
                    let before = calls.record(charge.orderId)
                    // Without immediate retries, each call is a delayed retry: the header counts them.
                    if context.retryAttempt != before { retryCountMismatches.add(charge.orderId) }
                    if before < failures { throw Transient() }
                    handled.add(charge.orderId)
                }
            if case .quorum(let limit) = queueType { configured = configured.onQuorumQueue(deliveryLimit: limit) }
            let subscription = configured
            queues.withLock { $0.append(contentsOf: [subscription.queue!] + (1...4).map { EventTopology.retryQueue(of: subscription.queue!, step: $0) }) }
            try await bus.declare(subscription)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run(subscription) }
                try await bus.publish((0..<total).map { Charged(orderId: "t-\($0)", amount: $0) }, to: domain)
                try await handled.wait(for: total, within: 30, "every event handled")
                group.cancelAll()
            }
            let failing = (0..<total).filter { $0 % 10 < 3 }
            let gaps = failing.filter { 1 + $0 % 3 == 3 }.map { index -> [Duration] in
                let times = calls.of("t-\(index)")
                return zip(times, times.dropFirst()).map { $0.duration(to: $1) }
            }
            let parked = try await withTestConnection { admin in
                try await admin.openChannel().declareQueue(subscription.parkingLot!, passive: true).messageCount
            }
            print(
                "transient failures (\(queueType)): published \(total), handled \(handled.distinct), duplicated \(handled.duplicates), handler calls \(calls.total), failed calls \(calls.total - total), parked \(parked); gaps of a message that failed 3 times: \(gaps.first ?? [])"
            )
            #expect(handled.distinct == total)
            #expect(handled.duplicates == 0)
            #expect(calls.total == total + failing.map { 1 + $0 % 3 }.reduce(0, +))
            #expect(parked == 0)
            #expect(retryCountMismatches.distinct == 0)
            // 100 ms, 300 ms, 900 ms (±20 %): each retry waits at least its step's delay, so the
            // waits grow (a busy broker may add to any of them, so only the lower bounds are checked).
            let minimums: [Duration] = [.milliseconds(80), .milliseconds(240), .milliseconds(720)]
            for messageGaps in gaps {
                #expect(messageGaps.count == 3)
                for (gap, minimum) in zip(messageGaps, minimums) { #expect(gap >= minimum) }
            }
        }
    }

    @Test("a permanent failure is parked after every attempt, with why; replayed after the fix, it is handled once")
    func permanentFailureAndReplay() async throws {
        try await withEventBus { bus, domain, queues in
            let fixed = Mutex(false)
            let calls = Calls()
            let handled = Seen()
            let subscription = EventSubscription.publishSubscribe(exchange: domain, service: "email")
                .retrying(RetryPolicy(immediateRetries: 1, delays: [.milliseconds(50), .milliseconds(100)]))
                .on(Charged.self) { charge, _ in
                    _ = calls.record(charge.orderId)
                    if charge.orderId == "bad" && !fixed.withLock({ $0 }) { throw Transient() }
                    if charge.orderId == "invalid" { throw DoNotRetry(Transient()) }
                    handled.add(charge.orderId)
                }
            let queue = try #require(subscription.queue)
            queues.withLock { $0.append(contentsOf: [queue] + (1...2).map { EventTopology.retryQueue(of: queue, step: $0) }) }
            try await bus.declare(subscription)
            let bad = try await bus.publish(Charged(orderId: "bad", amount: 1), to: domain)
            try await bus.publish(Charged(orderId: "invalid", amount: 2), to: domain)
            try await bus.publish(Charged(orderId: "good", amount: 3), to: domain)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run(subscription) }
                let parked = try await withTimeout(10, "two parked messages") {
                    while true {
                        let parked = try await bus.parkedMessages(of: queue)
                        if parked.count == 2 { return parked }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                let exhausted = try #require(parked.first { $0.messageID == bad.messageID })
                #expect(exhausted.reason == "retriesExhausted")
                #expect(exhausted.attempts == 6)  // (1 + 1 immediate) × (1 + 2 delayed)
                #expect(exhausted.error?.contains("Transient") == true)
                #expect(exhausted.originalExchange == domain)
                #expect(exhausted.originalRoutingKey == "test.Charged")
                #expect(exhausted.firstFailureAt != nil && exhausted.parkedAt != nil)
                let invalid = try #require(parked.first { $0.messageID != bad.messageID })
                #expect(invalid.reason == "nonRetryable")
                #expect(calls.of("invalid").count == 1)
                #expect(calls.of("bad").count == 6)

                fixed.withLock { $0 = true }
                let moved = try await bus.replayParked(of: queue, messageIDs: [bad.messageID])
                #expect(moved == 1)
                try await handled.wait(for: 2, "the replayed event")
                let left = try await bus.parkedMessages(of: queue)
                #expect(left.map(\.messageID) == [invalid.messageID])
                group.cancelAll()
            }
            print("permanent failure: bad called \(calls.of("bad").count) times, parked, replayed, handled \(handled.distinct) (duplicated \(handled.duplicates))")
            #expect(handled.duplicates == 0)
        }
    }

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
@Suite("Events: crashes (the bookstore sample's processes)")
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
