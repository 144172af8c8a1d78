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
                    try await pollPause()
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

    // MARK: Client health

    /// Waits (at most 5 s) until `read` returns `expected`: the I/O thread reports counts once per
    /// batch and gauges once a second.
    static func eventually<Value: Equatable & Sendable>(
        _ what: String, _ expected: Value, _ read: @escaping @Sendable () -> Value?
    ) async throws -> Value? {
        try await withTimeout(5, what) {
            while read() != expected { try await Task.sleep(for: .milliseconds(20)) }
            return read()
        }
    }

    static func counter(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)] = []) -> Int64? {
        (try? metrics.expectCounter(label, dimensions))?.totalValue
    }

    static func meter(_ metrics: TestMetrics, _ label: String) -> Double? {
        (try? metrics.expectMeter(label))?.lastValue
    }

    @Test("health: open connections and channels, confirms acked and nacked, returns, redeliveries, acks, nacks and rejects")
    func health() async throws {
        let metrics = TestMetrics()
        let connection = try await TestBroker.connect(metricsFactory: metrics)
        try await withTestConnection(connection) { connection in
            let channel = try await connection.openChannel()
            #expect(try await Self.eventually("one open connection", 1) { Self.meter(metrics, "amqp.client.connections") } == 1)
            #expect(try await Self.eventually("one open channel", 1) { Self.meter(metrics, "amqp.client.channels") } == 1)

            // A queue that takes one message and refuses the next ones: the broker nacks them.
            let queue = TestBroker.uniqueName()
            try await channel.declareQueue(
                queue, exclusive: true, arguments: ["x-max-length": 1, "x-overflow": "reject-publish"])
            try await channel.enablePublisherConfirms()
            try await channel.publish("kept", routingKey: queue).confirmed()
            for _ in 0..<2 {
                let error = await expectAMQPError { try await channel.publish("refused", routingKey: queue).confirmed() }
                #expect(error?.code == .publishNacked)
            }
            // Unroutable and mandatory: returned, then acked.
            let returnError = await expectAMQPError {
                try await channel.publish("lost", routingKey: TestBroker.uniqueName(), mandatory: true).confirmed()
            }
            #expect(returnError?.code == .messageReturned)
            let acked = [("amqp.confirm.outcome", "ack")]
            let nacked = [("amqp.confirm.outcome", "nack")]
            #expect(try await Self.eventually("2 confirms acked", 2) { Self.counter(metrics, "amqp.client.confirms", acked) } == 2)
            #expect(try await Self.eventually("2 confirms nacked", 2) { Self.counter(metrics, "amqp.client.confirms", nacked) } == 2)
            #expect(try await Self.eventually("1 return", 1) { Self.counter(metrics, "amqp.client.returned.messages") } == 1)
            let failedPublish = try metrics.expectTimer(
                "messaging.client.operation.duration",
                [("messaging.system", "rabbitmq"), ("messaging.operation.name", "publish"), ("error.type", "publishNacked")])
            #expect(failedPublish.values.count == 2)

            // Settlements, and the redeliveries they cause.
            var iterator = try await channel.consume(queue: queue).makeAsyncIterator()
            let first = try #require(try await iterator.next(within: 5))
            #expect(!first.redelivered)
            try await first.nack(requeue: true)
            let second = try #require(try await iterator.next(within: 5))
            #expect(second.redelivered)
            try await second.reject(requeue: true)
            let third = try #require(try await iterator.next(within: 5))
            struct HandlingFailed: Error {}
            await #expect(throws: HandlingFailed.self) {
                try await third.withProcessingSpan { delivery in
                    try await delivery.ack()
                    throw HandlingFailed()
                }
            }
            for type in ["ack", "nack", "reject"] {
                let dimensions = [("amqp.settlement.type", type)]
                #expect(try await Self.eventually("1 \(type)", 1) { Self.counter(metrics, "amqp.client.settlements", dimensions) } == 1)
            }
            #expect(try await Self.eventually("2 redeliveries", 2) { Self.counter(metrics, "amqp.client.redelivered.messages") } == 2)
            let failedProcessing = try metrics.expectTimer(
                "messaging.process.duration",
                [("messaging.system", "rabbitmq"), ("messaging.operation.name", "process"), ("error.type", "HandlingFailed")])
            #expect(failedProcessing.values.count == 1)

            // Deliveries the application has not taken yet wait in the consumer's buffer.
            let waiting = 5
            let buffered = try await channel.declareQueue("", exclusive: true).name
            for index in 0..<waiting { try await channel.publish("\(index)", routingKey: buffered).confirmed() }
            let idle = try await channel.consume(queue: buffered)
            #expect(
                try await Self.eventually("\(waiting) buffered deliveries", Double(waiting)) {
                    Self.meter(metrics, "amqp.client.consumer_buffer.deliveries")
                } == Double(waiting))
            var idleIterator = idle.makeAsyncIterator()
            for _ in 0..<waiting { try await #require(try await idleIterator.next(within: 5)).ack() }
            #expect(
                try await Self.eventually("no buffered deliveries", 0) {
                    Self.meter(metrics, "amqp.client.consumer_buffer.deliveries")
                } == 0)
        }
        #expect(try await Self.eventually("no open connection", 0) { Self.meter(metrics, "amqp.client.connections") } == 0)
        #expect(Self.meter(metrics, "amqp.client.channels") == 0)
    }

    @Test("health: a connection cut counts a recovery, its failed and successful attempts; the connection gauge goes back to 1")
    func recoveryMetrics() async throws {
        let metrics = TestMetrics()
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast(), metricsFactory: metrics)
        defer { proxy.stop() }
        try await withTestConnection(connection) { connection in
            let watcher = EventWatcher(connection)
            _ = try await connection.openChannel()
            #expect(try await Self.eventually("one open connection", 1) { Self.meter(metrics, "amqp.client.connections") } == 1)
            // The first attempt finds the way refused; the next one gets through.
            proxy.mode = .refuse
            proxy.cutAll()
            try await watcher.next("a failed attempt") { if case .recoveryFailed = $0 { true } else { false } }
            proxy.mode = .forward
            try await watcher.recovered()
            #expect(Self.counter(metrics, "amqp.client.recoveries") == 1)
            #expect(Self.counter(metrics, "amqp.client.recovery.attempts", [("amqp.recovery.outcome", "success")]) == 1)
            let failed = Self.counter(metrics, "amqp.client.recovery.attempts", [("amqp.recovery.outcome", "failure")]) ?? 0
            print("recovery attempts failed: \(failed)")
            #expect(failed >= 1)
            let connections = try metrics.expectMeter("amqp.client.connections")
            // Open, lost, open again.
            #expect(connections.values.suffix(2) == [0, 1])
            #expect(Self.meter(metrics, "amqp.client.channels") == 1)
        }
    }
}
