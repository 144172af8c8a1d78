import AMQPClient
import Foundation
import Testing

@Suite("Delivery batching")
struct DeliveryBatchingTests {
    @Test("a steady no-ack stream arrives whole and in order; the first message after a pause is not held back")
    func steadyStreamThenPause() async throws {
        // A delay long enough that a message held back shows above any hiccup of a busy machine:
        // 1 s, so a pause is anything over 4 s.
        let batching = AMQPConnection.Configuration.DeliveryBatching(maximumDelay: .seconds(1))
        try await withTestConnection({ $0.deliveryBatching = batching }) { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name
            let count = 5_000
            let body = [UInt8](repeating: 0x61, count: 64)
            for index in 0..<count {
                try await channel.publish(body, routingKey: queue, properties: .init(messageID: "\(index)"))
            }
            let consumer = try await channel.consume(queue: queue, noAck: true)
            var iterator = consumer.makeAsyncIterator()
            var received: [Int] = []
            let streamStart = ContinuousClock.now
            while received.count < count {
                let delivery = try #require(try await iterator.next(within: 10))
                received.append(Int(delivery.properties.messageID ?? "") ?? -1)
            }
            let streamTime = ContinuousClock.now - streamStart
            #expect(received == Array(0..<count))

            // The pause is the scenario, not synchronisation: the consumer waits longer than
            // four times the delay, so the next message counts as arriving alone.
            try await Task.sleep(for: .milliseconds(4_500))
            let publishedAt = ContinuousClock.now
            try await channel.publish("after the pause", routingKey: queue)
            let late = try #require(try await iterator.next(within: 10))
            let latency = ContinuousClock.now - publishedAt
            print("delivery batching: \(count) in order in \(streamTime); after a pause, one message in \(latency)")
            #expect(late.bodyString == "after the pause")
            #expect(latency < .milliseconds(700), "held back for the batching delay: \(latency)")
        }
    }
}
