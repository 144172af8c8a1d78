#if SQLite
import AMQPClient
import AMQPEvents
import AMQPEventsSQLite
import Foundation
import Testing

// With the SQLite trait (scripts/test.sh enables it).
extension EventBehaviourTests {
    @Test(
        "the outbox relay publishes in order, and an event no queue takes waits without holding up the rest",
        arguments: Transport.allCases)
    func outboxRelay(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("relay-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let store = try SQLiteEventStore(path: directory.appendingPathComponent("outbox.sqlite").path, appID: "relay-test")
            let calls = Calls()
            let subscription = EventSubscription.publishSubscribe(exchange: domain, service: "billing")
                .on(Charged.self) { event, _ in calls.add(event.orderId) }
            queues.withLock { $0.append(subscription.queue!) }
            try await bus.declare(subscription)
            try await store.database.write { db in
                try store.enqueue(Charged(orderId: "1", amount: 1), to: domain, in: db)
                try store.enqueue(Charged(orderId: "lost", amount: 0), to: domain, routingKey: "nobody.listens", in: db)
                try store.enqueue(Charged(orderId: "2", amount: 2), to: domain, in: db)
            }
            let relay = OutboxRelay(store: store, bus: bus)
            try await running(bus, [subscription]) {
                #expect(try await relay.publishPending() == 2)
                try await calls.wait(for: 2, "the two routable events")
            }
            #expect(calls.all == ["1", "2"])
            #expect(try await store.pendingCount() == 1, "the unroutable event waits in the outbox")
        }
    }
}
#endif
