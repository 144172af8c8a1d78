import AMQPClient
import Foundation
import Testing

/// Faults injected with ``TCPProxy`` between the client and the broker.
@Suite("Connection failures")
struct ConnectionFailureTests {
    static func connectThroughProxy(heartbeat: Duration = .seconds(60)) async throws -> (TCPProxy, AMQPConnection) {
        let broker = try TestBroker.configuration
        let proxy = try TCPProxy(targetPort: broker.port)
        let connection = try await TestBroker.connect {
            $0.host = "127.0.0.1"
            $0.port = proxy.port
            $0.heartbeat = heartbeat
        }
        return (proxy, connection)
    }

    @Test("a silent peer (black-holed connection) is declared dead within about two heartbeats")
    func blackHoleDetected() async throws {
        let (proxy, connection) = try await Self.connectThroughProxy(heartbeat: .seconds(2))
        defer { proxy.stop() }
        let channel = try await connection.openChannel()
        let queue = try await channel.declareQueue("", exclusive: true)
        let consumer = try await channel.consume(queue: queue.name)

        let events = connection.events()
        proxy.mode = .blackHole
        let start = ContinuousClock.now
        let error = try await withTimeout(10, "the dead connection to be noticed") { await connection.closed() }
        let elapsed = ContinuousClock.now - start
        #expect(error?.code == .connectionLost)
        #expect(elapsed < .seconds(5), "declared dead after \(elapsed)")
        // The consumer ends with the same error.
        let consumerError = await expectAMQPError {
            var iterator = consumer.makeAsyncIterator()
            _ = try await iterator.next(within: 5)
        }
        #expect(consumerError?.code == .connectionLost)
        let seen = try await withTimeout(5, "the closed event") { await collectAll(events) }
        #expect(seen.count == 1)
        if case .closed(let closedError) = seen.first { #expect(closedError?.code == .connectionLost) }
    }

    @Test("a cut connection releases every pending call, consumer and confirm")
    func cutReleasesWaiters() async throws {
        let (proxy, connection) = try await Self.connectThroughProxy()
        defer { proxy.stop() }
        let channel = try await connection.openChannel()
        try await channel.enablePublisherConfirms()
        let queue = try await channel.declareQueue("", exclusive: true)
        let consumer = try await channel.consume(queue: queue.name)

        // Nothing reaches the broker now, so these stay pending until the cut.
        proxy.mode = .blackHole
        let confirmation = try await channel.publish("unconfirmed", routingKey: queue.name)
        let otherChannel = Task { try await connection.openChannel() }
        let declare = Task { try await channel.declareQueue(queue.name, passive: true) }
        let consuming = Task {
            var iterator = consumer.makeAsyncIterator()
            return try await iterator.next()
        }
        proxy.cutAll()

        try await withTimeout(10, "every waiter to be released") {
            let confirmError = await expectAMQPError { try await confirmation.confirmed() }
            #expect(confirmError?.code == .outcomeUnknown)
            let openError = await expectAMQPError { _ = try await otherChannel.value }
            #expect(openError?.code == .connectionLost)
            let declareError = await expectAMQPError { _ = try await declare.value }
            #expect(declareError?.code == .connectionLost)
            let consumerError = await expectAMQPError { _ = try await consuming.value }
            #expect(consumerError?.code == .connectionLost)
        }
        #expect(await connection.closed()?.code == .connectionLost)
        #expect(!connection.isOpen)
    }
}
