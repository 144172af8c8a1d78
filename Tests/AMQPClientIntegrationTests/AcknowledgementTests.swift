import AMQPClient
import Foundation
import Testing

/// The client merges runs of in-order acks into one `multiple` ack; these tests check that
/// whatever order the application settles deliveries in, exactly those deliveries are settled.
@Suite("Acknowledgements")
struct AcknowledgementTests {
    /// Publishes `count` messages to a new exclusive queue and receives them all (unsettled).
    static func receive(_ count: Int, on channel: AMQPChannel) async throws -> (String, [AMQPDelivery]) {
        let queue = try await channel.declareQueue("", exclusive: true).name
        for index in 1...count { try await channel.publish("m\(index)", routingKey: queue) }
        try await channel.setPrefetch(count: UInt16(count))
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        var deliveries: [AMQPDelivery] = []
        for _ in 1...count { deliveries.append(try #require(try await iterator.next(within: 5))) }
        try await consumer.cancel()
        return (queue, deliveries)
    }

    /// Closes `channel` (which requeues anything unsettled) and returns the queue's ready count
    /// once it is `expected`, or after 5 s: the queue takes the requeued messages back
    /// asynchronously, after the channel's close-ok.
    static func readyAfterClose(
        _ channel: AMQPChannel, _ connection: AMQPConnection, _ queue: String, expecting expected: UInt32
    ) async throws -> UInt32 {
        // A round trip first: an ack of an unknown or already-acked tag would have closed the channel.
        try await channel.declareQueue(queue, passive: true)
        #expect(channel.isOpen)
        await channel.close()
        let checker = try await connection.openChannel()
        if let info = try? await checker.waitForQueue(queue, "\(expected) ready messages", until: { $0.messageCount == expected }) {
            return info.messageCount
        }
        return try await checker.declareQueue(queue, passive: true).messageCount
    }

    @Test("out-of-order acks, nacks and rejects settle exactly what they name")
    func outOfOrder() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let (queue, d) = try await Self.receive(10, on: channel)

            for index in [1, 2, 3] { try await d[index].ack() }  // tags 2-4 while 1 is unsettled
            for index in 5..<10 { try await d[index].ack() }  // tags 6-10 while 1 and 5 are unsettled
            try await d[4].reject(requeue: false)  // tag 5 is dropped
            try await d[0].nack(requeue: true)  // tag 1 goes back

            #expect(try await Self.readyAfterClose(channel, connection, queue, expecting: 1) == 1)
        }
    }

    @Test("a held delivery is not swept up by later in-order acks")
    func heldDelivery() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let (queue, d) = try await Self.receive(50, on: channel)

            for index in 0..<20 { try await d[index].ack() }
            // Tag 21 is held by the application; 22-50 are acked.
            for index in 21..<50 { try await d[index].ack() }
            #expect(try await Self.readyAfterClose(channel, connection, queue, expecting: 1) == 1)
        }
    }

    @Test("multiple acks and multiple nacks cover every earlier delivery")
    func multiple() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let (queue, d) = try await Self.receive(30, on: channel)

            try await d[9].ack(multiple: true)  // 1-10
            try await d[11].ack()  // 12, while 11 is unsettled
            try await d[19].nack(multiple: true, requeue: true)  // 11 and 13-20 go back
            for index in 20..<30 { try await d[index].ack() }  // 21-30
            #expect(try await Self.readyAfterClose(channel, connection, queue, expecting: 9) == 9)
        }
    }
}
