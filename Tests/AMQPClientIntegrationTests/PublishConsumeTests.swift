import AMQPClient
import Foundation
import Testing

@Suite("Publish and consume")
struct PublishConsumeTests {
    static let everyFieldType: AMQPFieldTable = [
        "bool": .bool(true),
        "int8": .int8(-8),
        "uint8": .uint8(200),
        "int16": .int16(-1600),
        "uint16": .uint16(60000),
        "int32": .int32(-320_000),
        "uint32": .uint32(4_000_000_000),
        "int64": .int64(-6_400_000_000_000),
        "float": .float(1.5),
        "double": .double(-2.25),
        "decimal": .decimal(AMQPDecimal(scale: 2, value: 12345)),
        "string": .string("héllo, wörld"),
        "bytes": .bytes([0, 1, 2, 255]),
        "timestamp": .timestamp(Date(timeIntervalSince1970: 1_700_000_000)),
        "table": .table(["nested": "yes", "depth": ["deeper": 3]]),
        "array": .array([1, "two", .bool(false), .array([.double(3.5)]), .void]),
        "void": .void,
        "empty-table": .table([:]),
        "empty-array": .array([]),
    ]

    @Test("every basic property and every field-table type round-trips through the broker")
    func propertiesRoundTrip() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true, arguments: ["x-max-priority": 9])
            let properties = AMQPProperties(
                contentType: "application/json",
                contentEncoding: "identity",
                headers: Self.everyFieldType,
                deliveryMode: .persistent,
                priority: 7,
                correlationID: "corr-42",
                replyTo: "replies",
                expiration: "60000",
                messageID: "msg-1",
                timestamp: Date(timeIntervalSince1970: 1_700_000_123),
                type: "OrderPlaced",
                userID: "guest",
                appID: "tests")
            try await channel.publish("{}", routingKey: queue.name, properties: properties)
            let consumer = try await channel.consume(queue: queue.name)
            var iterator = consumer.makeAsyncIterator()
            let delivery = try #require(try await iterator.next(within: 5))
            #expect(delivery.properties == properties)
            #expect(delivery.properties.headers == Self.everyFieldType)
            #expect(delivery.routingKey == queue.name)
            #expect(delivery.exchange == "")
            #expect(delivery.consumerTag == consumer.consumerTag)
            #expect(!delivery.redelivered)
            try await delivery.ack()
        }
    }

    @Test("bodies of 0 bytes, 1 byte and 1 MiB (several frames) arrive intact", arguments: [0, 1, 1 << 20])
    func bodySizes(size: Int) async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true)
            let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try await channel.publish(body, routingKey: queue.name)
            let consumer = try await channel.consume(queue: queue.name)
            var iterator = consumer.makeAsyncIterator()
            let delivery = try #require(try await iterator.next(within: 10))
            #expect(delivery.body.count == size)
            #expect(delivery.body == body)
            try await delivery.ack()
        }
    }

    @Test("paced publishes from several tasks, written straight to the socket or by the I/O thread, stay whole and in order")
    func pacedPublishesFromManyTasks() async throws {
        try await withTestConnection { connection in
            let consumerChannel = try await connection.openChannel()
            try await consumerChannel.setPrefetch(count: 200)
            let publishers = 4
            let perPublisher = 600
            var queues: [String] = []
            for _ in 0..<publishers { queues.append(try await consumerChannel.declareQueue("", exclusive: true).name) }
            // Deliveries keep arriving on the same connection, so its I/O thread keeps waking while
            // tasks write sporadic publishes themselves.
            var consumers: [Task<[Int], any Error>] = []
            for queue in queues {
                let consumer = try await consumerChannel.consume(queue: queue)
                consumers.append(
                    Task {
                        var received: [Int] = []
                        for try await delivery in consumer {
                            received.append(Int(delivery.bodyString)!)
                            try await delivery.ack()
                            if received.count == perPublisher { break }
                        }
                        return received
                    })
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for queue in queues {
                    group.addTask {
                        let channel = try await connection.openChannel()
                        for index in 0..<perPublisher {
                            try await channel.publish(String(index), routingKey: queue)
                            // Pauses (load shaping, not synchronisation) make many publishes
                            // sporadic: those take the direct path when the I/O thread is idle.
                            if index % 2 == 0 { try await Task.sleep(for: .microseconds(500)) }
                        }
                    }
                }
                try await group.waitForAll()
            }
            for consumer in consumers {
                let received = try await withTimeout(30, "the paced publishes") { try await consumer.value }
                #expect(received == Array(0..<perPublisher))
            }
            #expect(connection.isOpen)
        }
    }

    @Test("10,000 messages published on one channel are consumed exactly once, in order, on another")
    func tenThousandInOrder() async throws {
        try await withTestConnection { connection in
            let publisher = try await connection.openChannel()
            let consumerChannel = try await connection.openChannel()
            let queue = try await consumerChannel.declareQueue("", exclusive: true)
            try await consumerChannel.setPrefetch(count: 500)
            let consumer = try await consumerChannel.consume(queue: queue.name)
            let total = 10_000

            let consuming = Task {
                var received: [Int] = []
                received.reserveCapacity(total)
                for try await delivery in consumer {
                    received.append(Int(delivery.bodyString)!)
                    try await delivery.ack()
                    if received.count == total { break }
                }
                return received
            }
            for index in 0..<total {
                try await publisher.publish(String(index), routingKey: queue.name)
            }
            let received = try await withTimeout(60, "10,000 deliveries") { try await consuming.value }
            #expect(received == Array(0..<total))
            // All acknowledged: nothing left, nothing unacked once the consumer is gone.
            let info = try await publisher.declareQueue(queue.name, passive: true)
            #expect(info.messageCount == 0)
        }
    }

    @Test("nack with requeue redelivers; reject without requeue drops; get on an empty queue is nil")
    func nackRejectAndGet() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true)
            #expect(try await channel.get(from: queue.name) == nil)

            try await channel.publish("first", routingKey: queue.name)
            let consumer = try await channel.consume(queue: queue.name)
            var iterator = consumer.makeAsyncIterator()
            let first = try #require(try await iterator.next(within: 5))
            #expect(!first.redelivered)
            try await first.nack(requeue: true)
            let again = try #require(try await iterator.next(within: 5))
            #expect(again.bodyString == "first")
            #expect(again.redelivered)
            try await again.reject(requeue: false)

            try await consumer.cancel()
            #expect(try await channel.get(from: queue.name) == nil)

            try await channel.publish("second", routingKey: queue.name)
            let got = try await channel.waitForMessage(from: queue.name, noAck: false)
            #expect(got.bodyString == "second")
            #expect(got.messageCount == 0)
            try await got.ack()
            #expect(try await channel.get(from: queue.name) == nil)
        }
    }

    @Test("ending the iteration cancels the consumer and requeues what it never saw")
    func breakingOutCancelsConsumer() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true)
            for index in 0..<20 { try await channel.publish("m\(index)", routingKey: queue.name) }
            try await channel.setPrefetch(count: 10)
            do {
                let consumer = try await channel.consume(queue: queue.name)
                for try await delivery in consumer {
                    try await delivery.ack()
                    break
                }
            }
            // The consumer is gone and the 19 others are ready again.
            let info = try await channel.waitForQueue(queue.name) { $0.consumerCount == 0 && $0.messageCount == 19 }
            #expect(info.messageCount == 19)
            #expect(channel.isOpen)
        }
    }

    @Test("cancelling a task that waits for a delivery cancels the consumer on the broker")
    func cancellingTheTaskCancelsConsumer() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true)
            try await channel.publish("only", routingKey: queue.name)
            let consumer = try await channel.consume(queue: queue.name)
            let firstSeen = AsyncStream.makeStream(of: Void.self)
            let consuming = Task {
                var received = 0
                // After the only message, the loop waits in `next()` until the task is cancelled.
                for try await delivery in consumer {
                    try await delivery.ack()
                    received += 1
                    firstSeen.continuation.yield()
                }
                return received
            }
            var signals = firstSeen.stream.makeAsyncIterator()
            _ = await signals.next()
            consuming.cancel()
            #expect(try await withTimeout(5, "the loop to end") { try await consuming.value } == 1)
            let info = try await channel.waitForQueue(queue.name, "the consumer to be cancelled on the broker") {
                $0.consumerCount == 0
            }
            #expect(info.messageCount == 0)
        }
    }

    @Test("deliveries still buffered after cancel() are requeued when the iteration ends")
    func bufferedAfterCancelAreRequeued() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true)
            for index in 0..<10 { try await channel.publish("m\(index)", routingKey: queue.name) }
            try await channel.setPrefetch(count: 10)
            do {
                let consumer = try await channel.consume(queue: queue.name)
                var iterator = consumer.makeAsyncIterator()
                let first = try #require(try await iterator.next(within: 5))
                try await first.ack()
                try await consumer.cancel()
            }
            let info = try await channel.waitForQueue(queue.name, "the unseen deliveries to be requeued") {
                $0.messageCount == 9
            }
            #expect(info.consumerCount == 0)
        }
    }

    @Test("a consumer whose queue is deleted ends with consumerCancelled")
    func brokerCancelsConsumer() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let name = TestBroker.uniqueName()
            try await channel.declareQueue(name)
            let consumer = try await channel.consume(queue: name)
            let other = try await connection.openChannel()
            try await other.deleteQueue(name)
            let error = await expectAMQPError {
                var iterator = consumer.makeAsyncIterator()
                _ = try await iterator.next(within: 5)
            }
            #expect(error?.code == .consumerCancelled)
            #expect(channel.isOpen)
        }
    }

    @Test("noAck consumers receive without acknowledging")
    func noAckConsumer() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true)
            let consumer = try await channel.consume(queue: queue.name, consumerTag: "my-tag", noAck: true)
            #expect(consumer.consumerTag == "my-tag")
            for index in 0..<3 { try await channel.publish("n\(index)", routingKey: queue.name) }
            var iterator = consumer.makeAsyncIterator()
            for index in 0..<3 {
                let delivery = try #require(try await iterator.next(within: 5))
                #expect(delivery.bodyString == "n\(index)")
                #expect(delivery.isAutoAcknowledged)
                // Acking it would close the channel (406 unknown delivery tag): refused locally.
                let error = await expectAMQPError { try await delivery.ack() }
                #expect(error?.code == .invalidArgument)
            }
            #expect(channel.isOpen)

            await channel.close()
            let check = try await connection.openChannel()
            #expect(try await check.declareQueue(queue.name, passive: true).messageCount == 0)
        }
    }
}

