import AMQPClient
import AMQPEvents
import Testing

extension EventBehaviourTests {
    @Test(
        "a quorum queue counts a message's returns and dead-letters it past its delivery limit",
        arguments: Transport.allCases)
    func quorumDeliveryLimit(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let (queue, dead) = ("\(domain).poison", "\(domain).poison.dead")
            queues.withLock { $0 += [queue, dead] }
            let channel = try await bus.connection.openChannel()
            try await channel.enablePublisherConfirms()
            try await channel.declareQueue(dead, durable: true)
            try await channel.declareQueue(
                queue, type: .quorum(.init(deliveryLimit: 2)),
                arguments: ["x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(dead)])
            try await channel.publish(Array("p".utf8), exchange: "", routingKey: queue).confirmed()
            // Bounded steps (basic.get within 5 s each), so that a message gone early fails the test.
            var counts: [Int?] = []
            for _ in 0..<3 {
                let taken = try await channel.waitForMessage(from: queue, noAck: false)
                counts.append(taken.properties.headers?["x-delivery-count"]?.integerValue)
                try await taken.reject(requeue: true)
            }
            let deadLettered = try await channel.waitForMessage(from: dead)
            let reason = deadLettered.properties.headers?["x-first-death-reason"]
            print("\(transport): x-delivery-count \(counts), dead-lettered for \(String(describing: reason))")
            #expect(counts == [0, 1, 2], "basic.get gets the count from the first delivery on")
            #expect(reason == "delivery_limit")
            await channel.close()
        }
    }
}
