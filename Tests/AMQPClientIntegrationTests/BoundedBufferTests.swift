import AMQPClient
import Testing

@Suite("Bounded buffers")
struct BoundedBufferTests {
    @Test("a no-ack consumer that falls behind stops the connection's reading: the broker keeps the rest, nothing is lost")
    func slowNoAckConsumer() async throws {
        let total = 600
        let body = [UInt8](repeating: 7, count: 64 * 1024)  // 37.5 MiB in all, the limit 1 MiB
        try await withScratchQueue { scratch in
            try await scratch.channel.enablePublisherConfirms()
            var confirmations: [AMQPPublishConfirmation] = []
            for _ in 0..<total { confirmations.append(try await scratch.channel.publish(body, routingKey: scratch.name)) }
            for confirmation in confirmations { try await confirmation.confirmed() }

            try await withTestConnection({ $0.consumerBufferLimit = 1 << 20 }) { connection in
                let channel = try await connection.openChannel()
                var iterator = try await channel.consume(queue: scratch.name, noAck: true).makeAsyncIterator()
                _ = try #require(try await iterator.next(within: 5))
                // Not iterating: the client holds its limit plus what the sockets buffer, and the
                // broker keeps the rest in the queue.
                let stalled = await #expect(throws: TimedOut.self) {
                    try await scratch.channel.waitForQueue(scratch.name, within: 3, "the queue to drain") { $0.messageCount == 0 }
                }
                let waiting = try await scratch.channel.declareQueue(scratch.name, passive: true).messageCount
                print("bounded consumer buffer: \(waiting) of \(total) messages still in the queue while the consumer did not iterate")
                #expect(stalled != nil)
                #expect(waiting > 0)

                // Iterating again resumes the reading: every message arrives, none twice.
                var received = 1
                while received < total, let delivery = try await iterator.next(within: 30) {
                    #expect(delivery.body.count == body.count)
                    received += 1
                }
                print("bounded consumer buffer: received \(received) of \(total), 0 lost")
                #expect(received == total)
                try await scratch.channel.waitForQueue(scratch.name) { $0.messageCount == 0 }
            }
        }
    }
}
