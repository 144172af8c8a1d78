import AMQPClient
import AMQPEvents
import AMQPEventsTesting
import Foundation
import Testing

// The README's typed-events quick start, line for line but for the broker's URL, which is the
// test broker's (the test below checks that they match).
struct OrderPlaced: AMQPEvent {
    static let eventType = "OrderPlaced"
    var orderId: String, userId: String, amount: Int
}

func readmeQuickStart() async throws {
    let bus = EventBus(connection: try await AMQPConnection.connect(url: TestBroker.url))
    let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
        .on(OrderPlaced.self) { order, _ in print("charging", order.amount, "for order", order.orderId) }
    try await bus.declare(payments)  // queue orders.payment, bound to exchange orders by event type
    try await bus.publish(OrderPlaced(orderId: "123", userId: "456", amount: 100), to: "orders")
    try await bus.run(payments)      // handles events until cancelled or shut down gracefully
}

// The README's test-harness lines, with the quick start's subscription.
func readmeHarness() async throws {
    let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
        .on(OrderPlaced.self) { order, _ in print("charging", order.amount, "for order", order.orderId) }
    try await EventTestHarness.withHarness { harness in
        try await harness.run([payments]) {
            try await harness.bus.publish(OrderPlaced(orderId: "1", userId: "u", amount: 5), to: "orders")
            try await harness.waitUntilHandled(1)
        }
        #expect(harness.handled.map(\.outcome) == [.succeeded])
    }
}

/// The lines of the README's code block after `marker`, trimmed.
func readmeBlock(after marker: String) throws -> [String] {
    let readme = try String(
        contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md"),
        encoding: .utf8)
    let start = try #require(readme.range(of: marker))
    let block = readme[start.upperBound...].split(separator: "```")[1]
    return block.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && $0 != "swift" }
}

@Suite("README")
struct QuickStartTests {
    @Test("the README's test-harness lines are this file's code, and they run without a broker")
    func harness() async throws {
        let source = Set(try String(contentsOfFile: #filePath, encoding: .utf8).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        let lines = try readmeBlock(after: "<!-- quick-start-harness")
        #expect(lines.count >= 6)
        for line in lines { #expect(source.contains(line), "README line not in the test: \(line)") }
        try await readmeHarness()
    }

    @Test("the typed-events quick start in the README is this file's code, and it runs: the order is handled")
    func quickStart() async throws {
        // The README connects to localhost:5672; the test, to the test broker.
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
            .replacingOccurrences(of: "url: TestBroker.url", with: #"url: "amqp://guest:guest@localhost:5672/""#)
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md"),
            encoding: .utf8)
        let marker = try #require(readme.range(of: "<!-- quick-start-events"))
        let block = readme[marker.upperBound...].split(separator: "```")[1]
        let lines = block.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && $0 != "swift" }
        let sourceLines = Set(source.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        for line in lines { #expect(sourceLines.contains(line), "README line not in the test: \(line)") }

        try await withTestConnection { admin in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await readmeQuickStart() }
                // Handled: the queue has a consumer and nothing left in it.
                try await withTimeout(10, "the quick start to handle its order") {
                    // A passive declare of a queue not declared yet closes its channel: a new one each time.
                    while true {
                        let channel = try await admin.openChannel()
                        let info = try? await channel.declareQueue("orders.payment", passive: true)
                        await channel.close()
                        if let info, info.consumerCount == 1, info.messageCount == 0 { return }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                group.cancelAll()
            }
        }
    }
}
