import AMQPClient
import CoreMetrics
import MetricsTestKit
import Testing

/// The messaging instruments against the broker, with swift-metrics' `TestMetrics` handed to the
/// connection (no global bootstrap).
@Suite("Metrics")
struct MetricsTests {
    static func dimensions(_ operation: String, _ destination: String) -> [(String, String)] {
        [("messaging.system", "rabbitmq"), ("messaging.operation.name", operation), ("messaging.destination.name", destination)]
    }

    @Test("messages sent and consumed are counted per destination; publish-to-confirm and processing are timed")
    func messagingInstruments() async throws {
        let metrics = TestMetrics()
        let total = 10
        try await withTestConnection(AMQPConnection.connect(to: TestBroker.configuration, metricsFactory: metrics)) { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            try await channel.declareQueue(queue, exclusive: true)
            try await channel.enablePublisherConfirms()
            var confirmations: [AMQPPublishConfirmation] = []
            for index in 0..<total { confirmations.append(try await channel.publish("\(index)", routingKey: queue)) }
            for confirmation in confirmations { try await confirmation.confirmed() }

            var iterator = try await channel.consume(queue: queue).makeAsyncIterator()
            for _ in 0..<total {
                let delivery = try #require(try await iterator.next(within: 5))
                try await delivery.withProcessingSpan { try await $0.ack() }
            }

            let sent = try metrics.expectCounter("messaging.client.sent.messages", Self.dimensions("publish", "amq.default"))
            #expect(sent.totalValue == Int64(total))
            // Counted by the I/O thread once its batch of frames is handled: at most a moment after.
            let consumed = try await withTimeout(5, "the consumed count") {
                while true {
                    let counter = try? metrics.expectCounter(
                        "messaging.client.consumed.messages", Self.dimensions("process", queue))
                    if let counter, counter.totalValue == Int64(total) { return counter.totalValue }
                    await Task.yield()
                }
            }
            #expect(consumed == Int64(total))
            let publishDuration = try metrics.expectTimer(
                "messaging.client.operation.duration",
                [("messaging.system", "rabbitmq"), ("messaging.operation.name", "publish")])
            #expect(publishDuration.values.count == total)
            #expect(publishDuration.values.allSatisfy { $0 > 0 })
            let processDuration = try metrics.expectTimer(
                "messaging.process.duration", [("messaging.system", "rabbitmq"), ("messaging.operation.name", "process")])
            #expect(processDuration.values.count == total)
        }
    }
}
