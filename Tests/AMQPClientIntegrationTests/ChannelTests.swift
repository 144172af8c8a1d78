import AMQPClient
import Foundation
import Testing

@Suite("Channels, declarations and channel errors")
struct ChannelTests {
    @Test("passive declare of a missing queue closes only that channel with 404")
    func passiveDeclareMissingQueue() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let survivor = try await connection.openChannel()

            let error = await expectAMQPError {
                try await channel.declareQueue(TestBroker.uniqueName(), passive: true)
            }
            #expect(error?.code == .channelClosed)
            #expect(error?.replyCode == 404)
            #expect(error?.replyText?.contains("NOT_FOUND") == true)
            #expect(!channel.isOpen)
            // The next call on the closed channel fails with the same reason.
            let next = await expectAMQPError { try await channel.publish("x", routingKey: "y") }
            #expect(next?.replyCode == 404)

            #expect(connection.isOpen)
            let queue = try await survivor.declareQueue("", exclusive: true)
            #expect(queue.name.hasPrefix("amq.gen-"))
            // A new channel works too.
            let fresh = try await connection.openChannel()
            try await fresh.declareQueue(queue.name, passive: true)
        }
    }

    @Test("redeclaring a queue with other arguments fails with 406")
    func redeclareWithOtherArguments() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let name = TestBroker.uniqueName()
            try await channel.declareQueue(name, exclusive: true, arguments: ["x-message-ttl": 60_000])
            let error = await expectAMQPError {
                try await channel.declareQueue(name, exclusive: true, arguments: ["x-message-ttl": 1_000])
            }
            #expect(error?.code == .channelClosed)
            #expect(error?.replyCode == 406)
            let other = try await connection.openChannel()
            let info = try await other.declareQueue(name, passive: true)
            #expect(info.name == name)
        }
    }

    @Test("an exclusive queue used from another connection gives 405")
    func exclusiveQueueFromAnotherConnection() async throws {
        try await withTestConnection { owner in
            try await withTestConnection { intruder in
                let queue = try await owner.openChannel().declareQueue("", exclusive: true)
                let channel = try await intruder.openChannel()
                let error = await expectAMQPError { _ = try await channel.consume(queue: queue.name) }
                #expect(error?.code == .channelClosed)
                #expect(error?.replyCode == 405)
                #expect(intruder.isOpen)
            }
        }
    }

    @Test("names over 255 bytes are refused before anything is sent")
    func nameTooLong() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let long = String(repeating: "q", count: 256)
            let error = await expectAMQPError { try await channel.declareQueue(long) }
            #expect(error?.code == .invalidArgument)
            let publishError = await expectAMQPError { try await channel.publish("x", exchange: long, routingKey: "k") }
            #expect(publishError?.code == .invalidArgument)
            let headerError = await expectAMQPError {
                try await channel.publish("x", routingKey: "k", properties: AMQPProperties(headers: [long: 1]))
            }
            #expect(headerError?.code == .invalidArgument)
            // Nothing reached the broker: the channel is still open.
            #expect(channel.isOpen)
            try await channel.declareQueue(String(repeating: "q", count: 200) + UUID().uuidString.prefix(8), exclusive: true)
        }
    }

    @Test("publishing to a missing exchange fails the next call on the channel with 404")
    func publishToMissingExchange() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.publish("lost", exchange: TestBroker.uniqueName(), routingKey: "k")
            let error = await expectAMQPError {
                _ = try await withTimeout(5) { try await channel.declareQueue("", exclusive: true) }
            }
            #expect(error?.replyCode == 404)
            #expect(connection.isOpen)
        }
    }

    @Test("exchanges: declare every type, bind exchange to exchange, fan out, unbind and delete")
    func exchangesAndBindings() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let orders = TestBroker.uniqueName("orders")
            let audit = TestBroker.uniqueName("audit")
            for type in [AMQPExchangeType.direct, .topic, .headers] {
                let name = TestBroker.uniqueName("\(type)")
                try await channel.declareExchange(name, type: type, autoDelete: false)
                try await channel.declareExchange(name, type: type, passive: true)
                try await channel.deleteExchange(name)
            }
            try await channel.declareExchange(orders, type: .fanout)
            try await channel.declareExchange(audit, type: .fanout, internal: true)
            try await channel.bindExchange(audit, to: orders)

            // OrderPlaced fans out to payment, inventory and notification services.
            var queues: [String] = []
            for _ in ["payment", "inventory", "notification"] {
                let queue = try await channel.declareQueue("", exclusive: true)
                try await channel.bindQueue(queue.name, to: orders)
                queues.append(queue.name)
            }
            let auditQueue = try await channel.declareQueue("", exclusive: true)
            try await channel.bindQueue(auditQueue.name, to: audit)

            try await channel.publish(#"{"event":"OrderPlaced","orderId":"123"}"#, exchange: orders, routingKey: "")
            for queue in queues + [auditQueue.name] as [String] {
                let delivery = try await channel.waitForMessage(from: queue)
                #expect(delivery.bodyString.contains("OrderPlaced"))
                #expect(delivery.exchange == orders)
            }

            try await channel.unbindExchange(audit, from: orders)
            try await channel.unbindQueue(queues[0], from: orders)
            try await channel.publish("second", exchange: orders, routingKey: "")
            _ = try await channel.waitForMessage(from: queues[1])
            #expect(try await channel.get(from: queues[0], noAck: true) == nil)
            #expect(try await channel.get(from: auditQueue.name, noAck: true) == nil)

            // Publishing to an internal exchange is refused asynchronously: the next call fails with 403.
            try await channel.publish("x", exchange: audit, routingKey: "")
            let error = await expectAMQPError {
                _ = try await withTimeout(5) { try await channel.declareQueue("", exclusive: true) }
            }
            #expect(error?.replyCode == 403)
            #expect(error?.code == .accessRefused)
            let cleanup = try await connection.openChannel()
            try await cleanup.deleteExchange(audit)
            try await cleanup.deleteExchange(orders)
        }
    }

    @Test("purge and delete report message counts; ifEmpty refuses a non-empty queue")
    func purgeAndDelete() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let name = TestBroker.uniqueName()
            try await channel.declareQueue(name, autoDelete: false)
            for index in 0..<5 { try await channel.publish("m\(index)", routingKey: name) }
            let info = try await channel.waitForQueue(name) { $0.messageCount == 5 }
            #expect(info.consumerCount == 0)
            #expect(try await channel.purgeQueue(name) == 5)
            try await channel.publish("again", routingKey: name)
            try await channel.waitForQueue(name) { $0.messageCount == 1 }
            let error = await expectAMQPError { try await channel.deleteQueue(name, ifEmpty: true) }
            #expect(error?.replyCode == 406)
            let other = try await connection.openChannel()
            #expect(try await other.deleteQueue(name) == 1)
        }
    }

}
