import AMQPClient
import Foundation
import Synchronization
import Testing

extension AMQPConnection.Configuration.Recovery {
    /// Recovery with short waits, so tests do not sit through production backoffs.
    static func fast(republishUnconfirmed: Bool = false, maximumAttempts: Int? = nil) -> Self {
        .init(
            initialDelay: .milliseconds(50), maximumDelay: .milliseconds(500), maximumAttempts: maximumAttempts,
            republishUnconfirmed: republishUnconfirmed)
    }
}

/// A connection's events, subscribed to at once, so that a test can wait for one that has not
/// happened yet without missing it.
struct EventWatcher: Sendable {
    let stream: AsyncStream<AMQPConnection.Event>

    init(_ connection: AMQPConnection) {
        stream = connection.events()
    }

    /// Waits for the next event that matches; returns every event seen up to and including it.
    @discardableResult
    func next(
        _ what: String, within seconds: Double = 30,
        where matches: @escaping @Sendable (AMQPConnection.Event) -> Bool
    ) async throws -> [AMQPConnection.Event] {
        let stream = stream
        return try await withTimeout(seconds, what) {
            var seen: [AMQPConnection.Event] = []
            for await event in stream {
                seen.append(event)
                if matches(event) { return seen }
            }
            throw EventsEnded(seen: seen, waitingFor: what)
        }
    }

    @discardableResult
    func recovered(within seconds: Double = 30) async throws -> [AMQPConnection.Event] {
        try await next("the connection to recover", within: seconds) { $0 == .recovered }
    }
}

struct EventsEnded: Error, CustomStringConvertible {
    let seen: [AMQPConnection.Event]
    let waitingFor: String
    var description: String { "the events ended before \(waitingFor); seen: \(seen)" }
}

@Suite("Automatic recovery")
struct RecoveryTests {
    @Test("after a cut, channels, prefetch, confirm mode, topology and consumers come back; the consumer continues")
    func restoresEverything() async throws {
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast())
        defer { proxy.stop() }
        try await withTestConnection(connection) { connection in
            let watcher = EventWatcher(connection)
            let channel = try await connection.openChannel()
            try await channel.setPrefetch(count: 10)
            try await channel.enablePublisherConfirms()
            let exchange = TestBroker.uniqueName()
            try await channel.declareExchange(exchange, type: .fanout)
            let queue = try await channel.declareQueue("", exclusive: true).name
            try await channel.bindQueue(queue, to: exchange)
            let consumer = try await channel.consume(queue: queue)
            var iterator = consumer.makeAsyncIterator()
            try await channel.publish("before", exchange: exchange, routingKey: "").confirmed()
            let before = try #require(try await iterator.next(within: 5))
            #expect(before.bodyString == "before")
            try await before.ack()

            proxy.cutAll()
            let events = try await watcher.recovered()
            print("events during recovery: \(events)")
            #expect(events.first.map { if case .connectionLost = $0 { true } else { false } } == true)
            #expect(events.contains(.recovering(attempt: 1)))
            // The exclusive server-named queue died with the connection: a new one took its place.
            let renamed = events.compactMap { event -> String? in
                if case .queueRenamed(let from, let to) = event, from == queue { to } else { nil }
            }
            #expect(renamed.count == 1)
            #expect(consumer.queue == renamed.first)
            #expect(channel.isOpen && channel.isConfirmMode)

            // Confirm mode, the exchange, the binding and the consumer all work on the new connection.
            try await withTimeout(10, "a confirm after recovery") {
                try await channel.publish("after", exchange: exchange, routingKey: "").confirmed()
            }
            let after = try #require(try await iterator.next(within: 5))
            #expect(after.bodyString == "after")
            #expect(!after.redelivered)
            try await after.ack()
            #expect(try await channel.declareQueue(consumer.queue, passive: true).consumerCount == 1)
            try await channel.deleteExchange(exchange)
        }
    }

    @Test("deliveries from before the loss are redelivered; acking the old ones does nothing; prefetch is restored")
    func staleDeliveries() async throws {
        try await withScratchQueue { scratch in
            let (queue, adminChannel) = (scratch.name, scratch.channel)
            for index in 0..<5 { try await adminChannel.publish("m\(index)", routingKey: queue) }

            let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast())
            defer { proxy.stop() }
            try await withTestConnection(connection) { connection in
                let watcher = EventWatcher(connection)
                let channel = try await connection.openChannel()
                try await channel.setPrefetch(count: 3)
                var iterator = try await channel.consume(queue: queue).makeAsyncIterator()
                var old: [AMQPDelivery] = []
                for _ in 0..<3 { old.append(try #require(try await iterator.next(within: 5))) }
                #expect(old.map(\.bodyString) == ["m0", "m1", "m2"])

                proxy.cutAll()
                try await watcher.recovered()
                // Their tags (1, 2, 3) now name new deliveries: settling them must not reach those.
                for delivery in old { try await delivery.ack() }
                try await old[0].nack(requeue: false)

                var again: [AMQPDelivery] = []
                for _ in 0..<3 { again.append(try #require(try await iterator.next(within: 5))) }
                #expect(again.map(\.bodyString) == ["m0", "m1", "m2"])
                #expect(again.allSatisfy { $0.redelivered })
                // Prefetch 3 came back: two messages wait in the queue until these are acked.
                try await adminChannel.waitForQueue(queue, "prefetch 3 after recovery") { $0.messageCount == 2 }
                for delivery in again { try await delivery.ack() }
                for expected in ["m3", "m4"] {
                    let delivery = try #require(try await iterator.next(within: 5))
                    #expect(delivery.bodyString == expected && !delivery.redelivered)
                    try await delivery.ack()
                }
                try await adminChannel.waitForQueue(queue, "every message acked") { $0.messageCount == 0 }
                #expect(channel.isOpen)
                #expect(try await channel.declareQueue(queue, passive: true).messageCount == 0)
            }
        }
    }

    @Test("what the application deleted or cancelled is not restored")
    func deletedStayDeleted() async throws {
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast())
        defer { proxy.stop() }
        try await withTestConnection(connection) { connection in
            let watcher = EventWatcher(connection)
            let channel = try await connection.openChannel()
            let deletedQueue = TestBroker.uniqueName()
            let deletedExchange = TestBroker.uniqueName()
            let keptQueue = TestBroker.uniqueName()
            let autoDeleteQueue = TestBroker.uniqueName()
            let autoDeleteExchange = TestBroker.uniqueName()
            try await channel.declareExchange(deletedExchange, type: .topic)
            try await channel.declareQueue(deletedQueue)
            try await channel.bindQueue(deletedQueue, to: deletedExchange, routingKey: "#")
            try await channel.deleteQueue(deletedQueue)
            try await channel.deleteExchange(deletedExchange)
            try await channel.declareQueue(keptQueue)
            try await channel.consume(queue: keptQueue).cancel()
            try await channel.declareQueue(autoDeleteQueue, autoDelete: true)
            try await channel.consume(queue: autoDeleteQueue).cancel()  // the broker deletes the queue
            try await channel.declareExchange(autoDeleteExchange, type: .fanout, autoDelete: true)
            try await channel.bindQueue(keptQueue, to: autoDeleteExchange)
            try await channel.unbindQueue(keptQueue, from: autoDeleteExchange)  // the broker deletes the exchange

            proxy.cutAll()
            try await watcher.recovered()

            try await withTestConnection { checker in
                for missing in [deletedQueue, autoDeleteQueue] {
                    let error = await expectAMQPError { try await checker.openChannel().declareQueue(missing, passive: true) }
                    #expect(error?.replyCode == 404, "queue \(missing) came back")
                }
                for missing in [deletedExchange, autoDeleteExchange] {
                    let error = await expectAMQPError {
                        try await checker.openChannel().declareExchange(missing, type: .topic, passive: true)
                    }
                    #expect(error?.replyCode == 404, "exchange \(missing) came back")
                }
                let kept = try await checker.openChannel().declareQueue(keptQueue, passive: true)
                #expect(kept.consumerCount == 0)
                try await channel.deleteQueue(keptQueue)
            }
        }
    }

    @Test("confirms pending at the loss fail with outcomeUnknown; publishing works again after recovery")
    func pendingConfirmsFail() async throws {
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast())
        defer { proxy.stop() }
        try await withTestConnection(connection) { connection in
            let watcher = EventWatcher(connection)
            let channel = try await connection.openChannel()
            try await channel.enablePublisherConfirms()
            let queue = try await channel.declareQueue("", exclusive: true).name

            proxy.mode = .blackHole
            var confirmations: [AMQPPublishConfirmation] = []
            for index in 0..<3 { confirmations.append(try await channel.publish("lost \(index)", routingKey: queue)) }
            proxy.cutAll()
            proxy.mode = .forward
            for confirmation in confirmations {
                let confirmError = await expectAMQPError {
                    try await withTimeout(10, "the confirm to fail") { try await confirmation.confirmed() }
                }
                #expect(confirmError?.code == .outcomeUnknown)
            }
            try await watcher.recovered()
            let renamed = try await channel.declareQueue("", exclusive: true).name
            try await withTimeout(10, "a confirm after recovery") {
                try await channel.publish("after", routingKey: renamed).confirmed()
            }
        }
    }

    @Test("with republishUnconfirmed, messages pending at the loss are published again and confirmed")
    func republishesUnconfirmed() async throws {
        try await withScratchQueue { scratch in
            let (queue, adminChannel) = (scratch.name, scratch.channel)

            let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(
                recovery: .fast(republishUnconfirmed: true))
            defer { proxy.stop() }
            try await withTestConnection(connection) { connection in
                let channel = try await connection.openChannel()
                try await channel.enablePublisherConfirms()
                proxy.mode = .blackHole
                var confirmations: [AMQPPublishConfirmation] = []
                for index in 0..<3 { confirmations.append(try await channel.publish("m\(index)", routingKey: queue)) }
                proxy.cutAll()
                proxy.mode = .forward
                try await withTimeout(30, "the republished messages to be confirmed") { [confirmations] in
                    for confirmation in confirmations { try await confirmation.confirmed() }
                }
                // Black-holed the first time, so each arrived exactly once, in order.
                var bodies: [String] = []
                for _ in 0..<3 { bodies.append(try await adminChannel.waitForMessage(from: queue).bodyString) }
                #expect(bodies == ["m0", "m1", "m2"])
            }
        }
    }

    @Test("a black-holed connection (heartbeat 2 s) is declared dead within 5 s and recovers once the network heals")
    func blackHoleRecovers() async throws {
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(
            heartbeat: .seconds(2), recovery: .fast()
        ) { $0.connectTimeout = .seconds(1) }
        defer { proxy.stop() }
        try await withTestConnection(connection) { connection in
            let watcher = EventWatcher(connection)
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name

            proxy.mode = .blackHole
            let start = ContinuousClock.now
            try await watcher.next("the dead connection to be noticed", within: 10) {
                if case .connectionLost = $0 { true } else { false }
            }
            let noticed = ContinuousClock.now - start
            print("black-holed connection declared dead after \(noticed)")
            #expect(noticed < .seconds(5))
            // Reconnecting through the black hole fails too, until it heals.
            try await watcher.next("a failed attempt") { if case .recoveryFailed = $0 { true } else { false } }
            proxy.mode = .forward
            try await watcher.recovered()
            let info = try await channel.declareQueue("", exclusive: true)
            #expect(info.name != queue)
        }
    }

    @Test("connecting and recovering try each endpoint in turn")
    func endpointsInTurn() async throws {
        let broker = try TestBroker.configuration
        let first = try TCPProxy(targetPort: broker.port)
        defer { first.stop() }
        let second = try TCPProxy(targetPort: broker.port)
        defer { second.stop() }
        // A closed port first: connecting goes on to the next endpoint, the first proxy.
        try await withTestConnection({
            $0.host = "127.0.0.1"
            $0.port = 1
            $0.alternateEndpoints = [.init(host: "127.0.0.1", port: first.port), .init(host: "127.0.0.1", port: second.port)]
            $0.endpointOrder = .inOrder
            $0.recovery = .fast()
        }) { viaEndpoints in
            let watcher = EventWatcher(viaEndpoints)
            #expect(viaEndpoints.currentEndpoint?.port == first.port)
            let channel = try await viaEndpoints.openChannel()
            // The first proxy goes down for good: recovery reaches the broker through the second.
            first.mode = .refuse
            first.cutAll()
            try await watcher.recovered()
            try await channel.declareQueue("", exclusive: true)
            #expect(viaEndpoints.isOpen)
            #expect(viaEndpoints.currentEndpoint?.port == second.port)
        }
    }

    @Test("recovery gives up after maximumAttempts, closes the connection, and fails what waited")
    func givesUp() async throws {
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(
            recovery: .fast(maximumAttempts: 2))
        defer { proxy.stop() }
        let watcher = EventWatcher(connection)
        let channel = try await connection.openChannel()
        proxy.mode = .refuse
        proxy.cutAll()
        try await watcher.next("recovery to begin") { if case .connectionLost = $0 { true } else { false } }
        // A call made while the connection recovers waits for it, then fails with it.
        let waiting = Task { try await channel.declareQueue("", exclusive: true) }
        let error = try await withTimeout(20, "recovery to give up") { await connection.closed() }
        #expect(error?.code == .connectionLost)
        #expect(error?.message.contains("gave up") == true)
        let callError = await expectAMQPError { _ = try await waiting.value }
        #expect(callError?.code == .connectionLost)
        let events = try await watcher.next("the closed event", within: 5) {
            if case .closed = $0 { true } else { false }
        }
        let failed = events.filter { if case .recoveryFailed = $0 { true } else { false } }
        #expect(failed.count == 2)
        #expect(events.contains(.recovering(attempt: 2)))
        #expect(!connection.isOpen)
    }

    @Test("close() during recovery ends it at once")
    func closeWhileRecovering() async throws {
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast())
        defer { proxy.stop() }
        let watcher = EventWatcher(connection)
        let channel = try await connection.openChannel()
        proxy.mode = .refuse
        proxy.cutAll()
        try await watcher.next("a failed attempt") { if case .recoveryFailed = $0 { true } else { false } }
        #expect(connection.isRecovering)
        let waiting = Task { try await channel.declareQueue("", exclusive: true) }
        try await withTimeout(5, "close() during recovery") { await connection.close() }
        let callError = await expectAMQPError { _ = try await waiting.value }
        #expect(callError?.code == .connectionClosed)
        #expect(await connection.closed() == nil)
    }

    @Test(
        "while recovery cannot reach a broker, closing a channel, cancelling a consumer and closing the connection each return within closeTimeout",
        arguments: [TCPProxy.Mode.refuse, .blackHole])
    func stoppingWhileUnreachable(mode: TCPProxy.Mode) async throws {
        let closeTimeout = Duration.seconds(1)
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast()) {
            $0.closeTimeout = closeTimeout
            $0.connectTimeout = .seconds(5)  // a black-holed attempt lasts this long
        }
        defer { proxy.stop() }
        let watcher = EventWatcher(connection)
        let channel = try await connection.openChannel()
        let consumerChannel = try await connection.openChannel()
        let queue = try await consumerChannel.declareQueue("", exclusive: true).name
        let consumer = try await consumerChannel.consume(queue: queue)
        proxy.mode = mode
        proxy.cutAll()
        try await watcher.next("the connection to be lost") { if case .connectionLost = $0 { true } else { false } }
        #expect(connection.isRecovering)

        let clock = ContinuousClock()
        // closeTimeout, the half second the I/O thread may take to notice, and slack for a
        // machine busy with the rest of the suite (a recovery attempt blocked in a connect to a
        // black hole takes no commands, so cancel() waits out its whole bound).
        let bound = closeTimeout + .milliseconds(1500)
        let cancelTook = try await clock.measure {
            try await withTimeout(10, "consumer.cancel() while recovering") { try await consumer.cancel() }
        }
        let channelCloseTook = try await clock.measure {
            try await withTimeout(10, "channel.close() while recovering") { await channel.close() }
        }
        let connectionCloseTook = try await clock.measure {
            try await withTimeout(10, "connection.close() while recovering") { await connection.close() }
        }
        print("stopping while unreachable (\(mode)): cancel \(cancelTook), channel close \(channelCloseTook), connection close \(connectionCloseTook)")
        #expect(cancelTook < bound)
        #expect(channelCloseTook < bound)
        #expect(connectionCloseTook < bound)
        #expect(!channel.isOpen)
        #expect(!connection.isOpen)
    }
}
