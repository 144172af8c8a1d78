import AMQPClient
import Foundation
import Testing

@Suite("Publisher confirms")
struct PublisherConfirmTests {
    @Test("a window of thousands of publishes in flight is confirmed, and every message arrived")
    func window() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enablePublisherConfirms()
            #expect(channel.isConfirmMode)
            let queue = try await channel.declareQueue("", exclusive: true)
            var confirmations: [AMQPPublishConfirmation] = []
            for index in 0..<5_000 {
                confirmations.append(
                    try await channel.publish("\(index)", routingKey: queue.name, properties: .init(deliveryMode: .persistent)))
            }
            #expect(confirmations.allSatisfy { $0.isTracked })
            let window = confirmations
            try await withTimeout(30, "5,000 confirms") {
                for confirmation in window { try await confirmation.confirmed() }
            }
            #expect(try await channel.declareQueue(queue.name, passive: true).messageCount == 5_000)
        }
    }

    @Test("an unroutable mandatory publish reports the return; routable ones around it succeed")
    func mandatoryReturn() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enablePublisherConfirms()
            let queue = try await channel.declareQueue("", exclusive: true)
            let before = try await channel.publish("routable", routingKey: queue.name, mandatory: true)
            let lost = try await channel.publish("nowhere", routingKey: TestBroker.uniqueName(), mandatory: true)
            let after = try await channel.publish("routable", routingKey: queue.name, mandatory: true)
            try await withTimeout(10) { try await before.confirmed() }
            let error = await expectAMQPError { try await withTimeout(10) { try await lost.confirmed() } }
            #expect(error?.code == .messageReturned)
            #expect(error?.replyCode == 312)
            try await withTimeout(10) { try await after.confirmed() }
            #expect(channel.isOpen)
        }
    }

    @Test("a publish the broker refuses is nacked")
    func nack() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enablePublisherConfirms()
            let queue = try await channel.declareQueue(
                "", exclusive: true, arguments: ["x-max-length": 1, "x-overflow": "reject-publish"])
            try await channel.publish("fits", routingKey: queue.name).confirmed()
            let error = await expectAMQPError {
                try await withTimeout(10) { try await channel.publish("overflows", routingKey: queue.name).confirmed() }
            }
            #expect(error?.code == .publishNacked)
        }
    }

    @Test("confirms pending when the channel closes fail with outcomeUnknown")
    func channelClosesFirst() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enablePublisherConfirms()
            // A missing exchange closes the channel (404) before any confirm.
            let confirmation = try await channel.publish("x", exchange: TestBroker.uniqueName(), routingKey: "k")
            let error = await expectAMQPError { try await withTimeout(10) { try await confirmation.confirmed() } }
            #expect(error?.code == .outcomeUnknown)
            #expect(error?.replyCode == 404)
        }
    }

    @Test("closing the connection releases every pending confirm")
    func connectionClosesFirst() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        try await channel.enablePublisherConfirms()
        let queue = try await channel.declareQueue("", exclusive: true)
        var confirmations: [AMQPPublishConfirmation] = []
        for _ in 0..<2_000 {
            confirmations.append(try await channel.publish([UInt8](repeating: 1, count: 1024), routingKey: queue.name))
        }
        await connection.close()
        let pending = confirmations
        let (confirmed, unknown) = try await withTimeout(10, "every confirmation to resolve") { () -> (Int, Int) in
            var confirmed = 0
            var unknown = 0
            for confirmation in pending {
                do {
                    try await confirmation.confirmed()
                    confirmed += 1
                } catch {
                    #expect((error as? AMQPError)?.code == .outcomeUnknown)
                    unknown += 1
                }
            }
            return (confirmed, unknown)
        }
        #expect(confirmed + unknown == 2_000)
    }

    @Test("without confirm mode there is no verdict: confirmed() says so instead of returning")
    func untracked() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true)
            let confirmation = try await channel.publish("x", routingKey: queue.name)
            #expect(!confirmation.isTracked)
            let error = await expectAMQPError { try await confirmation.confirmed() }
            #expect(error?.code == .invalidArgument)
        }
    }
}
