import AMQPClient
import Foundation
import Testing

extension RunAloneTests {
    @Test("a channel the broker closes because an ack timed out ends its consumer with the broker's 406")
    func ackTimeoutIsReported() async throws {
        // The broker-wide consumer timeout, lowered for channels opened from now on, and put
        // back (to RabbitMQ's default, 30 minutes) before the next test opens any.
        try await rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 1000).")
        do {
            try await checkAckTimeout()
        } catch {
            try await rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000).")
            throw error
        }
        try await rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000).")
    }

    private func checkAckTimeout() async throws {
        try await withScratchQueue { scratch in
            try await scratch.channel.publish("never acked", routingKey: scratch.name)

            try await withTestConnection { connection in
                let channel = try await connection.openChannel()
                var iterator = try await channel.consume(queue: scratch.name).makeAsyncIterator()
                let delivery = try #require(try await iterator.next(within: 5))
                #expect(delivery.bodyString == "never acked")
                // RabbitMQ checks the timeout about once a minute.
                let error = await expectAMQPError { _ = try await iterator.next(within: 120) }
                print("ack timeout reported as: \(error.map { "\($0)" } ?? "nothing")")
                #expect(error?.code == .channelClosed)
                #expect(error?.replyCode == 406)
                #expect(channel.closedError?.replyCode == 406)
                #expect(connection.isOpen)
                // The unacked message went back to its queue.
                #expect(try await scratch.channel.waitForMessage(from: scratch.name).bodyString == "never acked")
            }
        }
    }
}
