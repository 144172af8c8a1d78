import AMQPClient
import Foundation
import MetricsTestKit
import Testing

/// Waits (at most 30 s) for the connection to be blocked or unblocked, from its events.
func waitUntil(_ connection: AMQPConnection, isBlocked: Bool) async throws {
    try await withTimeout(30, isBlocked ? "connection.blocked" : "connection.unblocked") {
        // Subscribe first, then look at the state: no change can slip between the two.
        let events = connection.events()
        if (connection.blockedReason != nil) == isBlocked { return }
        for await event in events {
            switch event {
            case .blocked where isBlocked, .unblocked where !isBlocked: return
            case .closed(let error): throw error ?? AMQPError(code: .connectionClosed, message: "closed")
            default: continue
            }
        }
    }
}

/// Tests that must not share the broker or the process with others: faults that hit the whole
/// broker (a memory alarm, a restart) would disturb every other test, and the soak test measures
/// the process's memory. scripts/test.sh runs this suite after the others, one test at a time
/// (`AMQP_RUN_ALONE_TESTS=1 swift test --filter RunAloneTests`).
@Suite("Run alone: broker-wide faults and the soak test", .serialized, .enabled(if: ProcessInfo.processInfo.environment["AMQP_RUN_ALONE_TESTS"] == "1", "run alone by scripts/test.sh: they restart the broker's app and set its memory alarm"))
struct RunAloneTests {
    @Test("a memory alarm blocks publishing without wedging the connection; nothing is lost; metrics show the time blocked")
    func memoryAlarm() async throws {
        let metrics = TestMetrics()
        // Room for more held publishes than the socket buffers could take.
        let connection = try await TestBroker.connect(metricsFactory: metrics) { $0.publishBufferLimit = 32 << 20 }
        try await withTestConnection(connection) { connection in
            let publisher = try await connection.openChannel()
            let consumerChannel = try await connection.openChannel()
            let outbox = try await publisher.declareQueue("", exclusive: true).name
            // Messages reach `inbox` during the alarm by dead-lettering, which the alarm does not stop:
            // they expire from `waiting` five seconds after being published.
            let inbox = try await publisher.declareQueue("", exclusive: true).name
            let waiting = try await publisher.declareQueue(
                "", exclusive: true,
                arguments: ["x-message-ttl": 5_000, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(inbox)]
            ).name
            for index in 0..<20 { try await publisher.publish("expiring-\(index)", routingKey: waiting) }
            try await consumerChannel.setPrefetch(count: 100)
            let consumer = try await consumerChannel.consume(queue: inbox)
            var iterator = consumer.makeAsyncIterator()
            let events = connection.events()

            try await rabbitmqctl("set_vm_memory_high_watermark", "absolute", "1")
            do {
                // RabbitMQ blocks a connection (and tells it so) when it publishes during the alarm,
                // and stops reading its socket.
                try await publisher.publish("trigger", routingKey: outbox)
                try await waitUntil(connection, isBlocked: true)
                // Publishes now wait in the client instead of filling the socket (10 MiB: more than
                // the socket buffers hold), so the connection keeps reading: the dead-lettered
                // messages still arrive.
                let large = [UInt8](repeating: 0x2A, count: 100 << 10)
                for _ in 0..<100 { try await publisher.publish(large, routingKey: outbox) }
                let held = try await withTimeout(5, "the publish buffer gauge") {
                    while true {
                        if let bytes = MetricsTests.meter(metrics, "amqp.client.publish_buffer.bytes"), bytes >= 100 * 100 * 1024 {
                            return bytes
                        }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                print("publish buffer while blocked: \(Int(held)) bytes")
                for _ in 0..<20 {
                    let delivery = try #require(try await iterator.next(within: 20))
                    #expect(delivery.bodyString.hasPrefix("expiring-"))
                    try await delivery.ack()
                }
                #expect(connection.isOpen)
            } catch {
                try await rabbitmqctl("set_vm_memory_high_watermark", "0.4")
                throw error
            }

            try await rabbitmqctl("set_vm_memory_high_watermark", "0.4")
            try await waitUntil(connection, isBlocked: false)
            let outboxInfo = try await publisher.waitForQueue(outbox, within: 30, "the held publishes") { $0.messageCount == 101 }
            #expect(outboxInfo.messageCount == 101)
            let blockedFor = try metrics.expectTimer("amqp.client.blocked.duration").values
            print("blocked for: \(blockedFor.map { Duration.nanoseconds($0) })")
            #expect(blockedFor.count == 1)
            #expect(blockedFor.allSatisfy { $0 > 0 })
            #expect(
                try await MetricsTests.eventually("an empty publish buffer", 0) {
                    MetricsTests.meter(metrics, "amqp.client.publish_buffer.bytes")
                } == 0)
            await connection.close()
            let seen = try await withTimeout(5, "the events") { await collectAll(events) }
            #expect(seen.first.map { if case .blocked = $0 { true } else { false } } == true)
            #expect(Array(seen.dropFirst()) == [.unblocked, .closed(nil)])
        }
    }
}
