import AMQPClient
import Foundation
import Testing

/// Every element of a sequence that cannot fail, once it ends.
func collectAll<S: AsyncSequence>(_ sequence: S) async -> [S.Element] where S.Failure == Never {
    var elements: [S.Element] = []
    for await element in sequence { elements.append(element) }
    return elements
}

@Suite("Connection")
struct ConnectionTests {
    @Test("connects, opens channels and closes cleanly")
    func connectAndClose() async throws {
        let connection = try await TestBroker.connect()
        #expect(connection.isOpen)
        let channels = try await withThrowingTaskGroup(of: AMQPChannel.self) { group in
            for _ in 0..<20 { group.addTask { try await connection.openChannel() } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(Set(channels.map(\.id)).count == 20)
        await channels[0].close()
        #expect(!channels[0].isOpen)
        let error = await expectAMQPError { try await channels[0].declareQueue("", exclusive: true) }
        #expect(error?.code == .channelClosed)
        #expect(channels[1].isOpen)
        let events = connection.events()
        await connection.close()
        #expect(!connection.isOpen)
        #expect(await connection.closed() == nil)
        let seen = try await withTimeout(5, "the closed event") { await collectAll(events) }
        #expect(seen == [.closed(nil)])
        // Subscribing after the end still tells how it ended.
        #expect(await collectAll(connection.events()) == [.closed(nil)])
        let afterClose = await expectAMQPError { _ = try await connection.openChannel() }
        #expect(afterClose?.code == .connectionClosed)
    }

    @Test("wrong password is an authentication error that does not show the password")
    func wrongPassword() async throws {
        let error = await expectAMQPError {
            _ = try await TestBroker.connect { $0.password = "not-the-password-s3cret" }
        }
        #expect(error?.code == .authenticationFailed)
        #expect(error.map { !"\($0)".contains("s3cret") } ?? false)
    }

    @Test("a virtual host the user may not use is refused")
    func unknownVirtualHost() async throws {
        let error = await expectAMQPError {
            _ = try await TestBroker.connect { $0.virtualHost = "no-such-vhost-\(UUID().uuidString)" }
        }
        #expect(error?.code == .accessRefused)
        #expect(error?.replyCode == 530)
    }

    @Test("a closed port fails fast with a clear error")
    func closedPort() async throws {
        let start = ContinuousClock.now
        let error = await expectAMQPError {
            _ = try await TestBroker.connect {
                $0.host = "127.0.0.1"
                $0.port = 1  // nothing listens there
            }
        }
        #expect(error?.code == .connectionFailed)
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("an idle connection stays open across many heartbeat intervals")
    func heartbeatsKeepIdleConnectionAlive() async throws {
        let connection = try await TestBroker.connect { $0.heartbeat = .seconds(1) }
        let channel = try await connection.openChannel()
        // Idle for 5 heartbeat intervals: the broker drops a client that misses 2.
        try await Task.sleep(for: .seconds(5))
        #expect(connection.isOpen)
        let queue = try await channel.declareQueue("", exclusive: true)
        try await channel.publish("still here", routingKey: queue.name)
        let message = try await withTimeout(5) { try await channel.get(from: queue.name, noAck: true) }
        #expect(message?.bodyString == "still here")
        await connection.close()
    }

    @Test("closing the connection ends a running consumer and fails a pending call")
    func closeReleasesWaiters() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = try await channel.declareQueue("", exclusive: true)
        let consumer = try await channel.consume(queue: queue.name)

        let consuming = Task {
            var count = 0
            for try await _ in consumer { count += 1 }
            return count
        }
        // A get on a queue that another channel holds exclusively would fail; instead park a
        // pending call the broker answers only after the close: a passive declare queued behind it.
        let other = try await connection.openChannel()
        let pending = Task {
            for _ in 0..<1000 { try await other.declareQueue(queue.name, passive: true) }
        }
        await connection.close()

        let count = try await withTimeout(5, "the consumer to end") { try await consuming.value }
        #expect(count == 0)
        let error = await expectAMQPError { try await pending.value }
        #expect(error?.code == .connectionClosed)
    }
}
