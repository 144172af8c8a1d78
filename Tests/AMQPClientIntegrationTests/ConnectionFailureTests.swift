import AMQPClient
import CoreMetrics
import Foundation
import Testing

/// Faults injected with ``TCPProxy`` between the client and the broker.
@Suite("Connection failures")
struct ConnectionFailureTests {
    /// A connection through a new proxy. Recovery is off unless asked for: these tests watch
    /// what a loss does when nothing recovers.
    /// A connection through a ``TCPProxy`` to the test broker; with `tls`, to its TLS listener.
    static func connectThroughProxy(
        heartbeat: Duration = .seconds(60),
        recovery: AMQPConnection.Configuration.Recovery = .disabled,
        tls: Bool = false,
        metricsFactory: (any MetricsFactory)? = nil,
        _ adjust: (inout AMQPConnection.Configuration) -> Void = { _ in }
    ) async throws -> (TCPProxy, AMQPConnection) {
        let broker = try TestBroker.configuration
        let proxy = try TCPProxy(targetPort: tls ? TestBroker.tlsPort : broker.port)
        let connection = try await TestBroker.connect(metricsFactory: metricsFactory) {
            if tls { $0.tls = .init(caCertificateFile: TestBroker.tlsFile("ca.pem")) }
            $0.host = "127.0.0.1"
            $0.port = proxy.port
            $0.heartbeat = heartbeat
            $0.recovery = recovery
            adjust(&$0)
        }
        return (proxy, connection)
    }

    @Test("a silent peer (black-holed connection) is declared dead within about two heartbeats, also over TLS",
          arguments: Requirements.tlsVariants)
    func blackHoleDetected(tls: Bool) async throws {
        let (proxy, connection) = try await Self.connectThroughProxy(heartbeat: .seconds(2), tls: tls)
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

    @Test(
        "a broker that stops reading is declared dead within about two heartbeats, even while a write is blocked, also over TLS",
        arguments: Requirements.tlsVariants)
    func frozenPeerDetected(tls: Bool) async throws {
        let (proxy, connection) = try await Self.connectThroughProxy(heartbeat: .seconds(2), tls: tls)
        defer { proxy.stop() }
        let channel = try await connection.openChannel()
        let queue = try await channel.declareQueue("", exclusive: true).name

        proxy.mode = .freeze
        let start = ContinuousClock.now
        // Enough to fill every socket buffer on the way: the I/O thread then blocks in send.
        let publishing = Task {
            let body = [UInt8](repeating: 0x2A, count: 1 << 20)
            while true { try await channel.publish(body, routingKey: queue) }
        }
        defer { publishing.cancel() }
        let error = try await withTimeout(20, "the frozen peer to be noticed") { await connection.closed() }
        let elapsed = ContinuousClock.now - start
        print("frozen peer\(tls ? " (TLS)" : "") declared dead after \(elapsed): \(error.map { "\($0)" } ?? "no error")")
        #expect(error?.code == .connectionLost)
        #expect(error?.message.contains("stopped reading") == true)
        // Two heartbeat intervals of silence, plus the time it takes to fill the socket buffers.
        #expect(elapsed < .seconds(8))
        let publishError = await expectAMQPError { try await publishing.value }
        #expect(publishError?.code == .connectionLost)
    }

    @Test("without recovery, a cut connection releases every pending call, consumer and confirm")
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

@Suite("Nothing is lost across connection failures")
struct LosslessTests {
    @Test("deliveries not acked before a cut come back redelivered; acked ones do not")
    func unackedAreRedelivered() async throws {
        try await withScratchQueue { scratch in
            let queue = scratch.name
            let admin = scratch.channel
            for index in 0..<10 { try await admin.publish("m\(index)", routingKey: queue) }

            let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy()
            defer { proxy.stop() }
            let channel = try await connection.openChannel()
            try await channel.setPrefetch(count: 10)
            var iterator = try await channel.consume(queue: queue).makeAsyncIterator()
            var acked: Set<String> = []
            for index in 0..<10 {
                let delivery = try #require(try await iterator.next(within: 5))
                if index < 4 {
                    try await delivery.ack()
                    acked.insert(delivery.bodyString)
                }
            }
            // A round trip on the channel: the acks reached the broker before the cut.
            try await channel.declareQueue(queue, passive: true)
            proxy.cutAll()
            #expect(try await withTimeout(10) { await connection.closed() }?.code == .connectionLost)

            try await withTestConnection { again in
                var redelivered = try await again.openChannel().consume(queue: queue).makeAsyncIterator()
                var bodies: [String] = []
                for _ in 0..<6 {
                    let delivery = try #require(try await redelivered.next(within: 5))
                    #expect(delivery.redelivered)
                    bodies.append(delivery.bodyString)
                    try await delivery.ack()
                }
                print("redelivery after a cut: \(acked.count) acked before it, \(bodies.count) redelivered")
                #expect(Set(bodies).isDisjoint(with: acked))
                #expect(Set(bodies).union(acked) == Set((0..<10).map { "m\($0)" }))
            }
        }
    }

    /// One publishing session on a new connection through `proxy`: publishes `indices` with
    /// confirms, cutting the connection after `cutAfter` of them. Returns what was confirmed and
    /// what must be published again (outcome unknown, or never sent).
    static func publishSession(
        through proxy: TCPProxy, queue: String, indices: [Int], cutAfter: Int?
    ) async throws -> (confirmed: [Int], unknown: [Int]) {
        try await withTestConnection({
            $0.host = "127.0.0.1"
            $0.port = proxy.port
            $0.recovery = .disabled  // the application itself republishes on a new connection
        }) { connection in
            let channel = try await connection.openChannel()
            try await channel.enablePublisherConfirms()
            var sent: [(index: Int, confirmation: AMQPPublishConfirmation)] = []
            for (position, index) in indices.enumerated() {
                if position == cutAfter { proxy.cutAll() }
                guard
                    let confirmation = try? await channel.publish(
                        "\(index)", routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent))
                else { break }
                sent.append((index, confirmation))
            }
            var confirmed: [Int] = []
            var unknown: [Int] = []
            for publish in sent {
                do {
                    try await publish.confirmation.confirmed()
                    confirmed.append(publish.index)
                } catch let error as AMQPError {
                    #expect(error.code == .outcomeUnknown || error.code == .connectionLost)
                    unknown.append(publish.index)
                }
            }
            unknown.append(contentsOf: indices.dropFirst(sent.count))
            return (confirmed, unknown)
        }
    }

    @Test("confirmed persistent publishes survive three connection cuts: 0 lost")
    func confirmedPublishesSurviveCuts() async throws {
        // A method of its own: Swift 6.3's region checker crashes on this body inside a closure.
        try await withScratchQueue(durable: true) { try await confirmedPublishesSurviveCuts(in: $0) }
    }

    func confirmedPublishesSurviveCuts(in scratch: ScratchQueue) async throws {
        let total = 20_000
        let queue = scratch.name
        let admin = scratch.channel
        let proxy = try TCPProxy(targetPort: try TestBroker.configuration.port)
        defer { proxy.stop() }

        // The application's side of the contract: what was not confirmed is published again on
        // a new connection. (Automatic recovery does it by itself: see recoveryLosesNothing.)
        var pending = Array(0..<total)
        var confirmed = Set<Int>()
        var sessions = 0
        while !pending.isEmpty {
            let cutAfter = sessions < 3 ? min(4_000, pending.count / 2) : nil
            let indices = pending
            let result = try await withTimeout(60, "a publishing session") {
                try await Self.publishSession(through: proxy, queue: queue, indices: indices, cutAfter: cutAfter)
            }
            confirmed.formUnion(result.confirmed)
            pending = result.unknown
            sessions += 1
        }
        #expect(sessions == 4)

        // Every confirmed index is in the queue at least once.
        let available = Int(try await admin.declareQueue(queue, passive: true).messageCount)
        let reader = try await scratch.connection.openChannel()
        try await reader.setPrefetch(count: 1000)
        var iterator = try await reader.consume(queue: queue).makeAsyncIterator()
        var seen = [Int: Int]()
        for _ in 0..<available {
            let delivery = try #require(try await iterator.next(within: 10))
            seen[Int(delivery.bodyString)!, default: 0] += 1
            try await delivery.ack()
        }
        let lost = confirmed.filter { seen[$0] == nil }.count
        let duplicates = seen.values.reduce(0) { $0 + $1 - 1 }
        print("confirmed \(confirmed.count) of \(total) across 3 cuts: \(lost) lost, \(duplicates) duplicates")
        #expect(confirmed.count == total)
        #expect(lost == 0)
    }

    enum LosslessVariant: String, CaseIterable, Sendable {
        case plain
        /// Publisher and consumer each on its connection's I/O thread.
        case onIOExecutors
        /// Over TLS, through the same proxy.
        case tls
    }

    @Test(
        "with automatic recovery, 20,000 confirmed persistent publishes survive two proxy cuts and a broker-side close: 0 lost",
        .enabled(if: Requirements.met(Requirements.brokerControl), "needs rabbitmqctl on the test broker: scripts/test.sh"),
        arguments: LosslessVariant.allCases.filter { $0 != .tls || Requirements.met(Requirements.tlsListener) })
    func recoveryLosesNothing(variant: LosslessVariant) async throws {
        let total = 20_000
        let onIOExecutors = variant == .onIOExecutors
        try await withScratchQueue(durable: true) { scratch in
            let queue = scratch.name
            let proxy = try TCPProxy(targetPort: variant == .tls ? TestBroker.tlsPort : try TestBroker.configuration.port)
            defer { proxy.stop() }
            let publisherName = "lossless-publisher-\(UUID().uuidString)"
            let consumerName = "lossless-consumer-\(UUID().uuidString)"
            func connect(_ name: String) async throws -> AMQPConnection {
                try await TestBroker.connect {
                    if variant == .tls { $0.tls = .init(caCertificateFile: TestBroker.tlsFile("ca.pem")) }
                    $0.host = "127.0.0.1"  // verified against the certificate's IP address under TLS
                    $0.port = proxy.port
                    $0.connectionName = name
                    $0.recovery = .fast(republishUnconfirmed: true)
                }
            }
            let publisher = try await connect(publisherName)
            try await withTestConnection(publisher) { publisher in
                let consumer = try await connect(consumerName)
                try await withTestConnection(consumer) { consumer in

                    // The consumer: acks everything, counts every index it sees, until it has seen them all.
                    let consumerChannel = try await consumer.openChannel()
                    try await consumerChannel.setPrefetch(count: 500)
                    let deliveries = try await consumerChannel.consume(queue: queue)
                    // Also with publisher and consumer each on its connection's I/O thread, through the cuts.
                    let consuming = Task(executorPreference: onIOExecutors ? consumer.taskExecutor : nil) { () throws -> [Int: Int] in
                        var seen: [Int: Int] = [:]
                        for try await delivery in deliveries {
                            seen[Int(delivery.bodyString)!, default: 0] += 1
                            try await delivery.ack()
                            if seen.count == total { break }
                        }
                        return seen
                    }

                    // The publisher: a window of up to 1,000 unconfirmed messages, faults injected as it goes.
                    let channel = try await publisher.openChannel()
                    try await channel.enablePublisherConfirms()
                    var confirmations: [AMQPPublishConfirmation] = []
                    var awaited = 0
                    var failed = 0
                    var brokerSideClose: Task<Int, any Error>?
                    try await withTaskExecutorPreference(onIOExecutors ? publisher.taskExecutor : nil) {
                        for index in 0..<total {
                            switch index {
                            case 5_000, 10_000: proxy.cutAll()
                            case 15_000:
                                brokerSideClose = Task(executorPreference: globalConcurrentExecutor) {  // not on an I/O thread
                                    try await closeConnectionsFromBroker(named: publisherName)
                                        + closeConnectionsFromBroker(named: consumerName)
                                }
                            default: break
                            }
                            confirmations.append(
                                try await channel.publish("\(index)", routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent)))
                            while confirmations.count - awaited > 1_000 {
                                do { try await confirmations[awaited].confirmed() } catch { failed += 1 }
                                awaited += 1
                            }
                        }
                        while awaited < confirmations.count {
                            do { try await confirmations[awaited].confirmed() } catch { failed += 1 }
                            awaited += 1
                        }
                    }
                    let closedFromBroker = try await brokerSideClose?.value ?? 0
                    let seen = try await withTimeout(120, "every message to be consumed") { try await consuming.value }
                    let lost = (0..<total).filter { seen[$0] == nil }.count
                    let duplicates = seen.values.reduce(0) { $0 + $1 - 1 }
                    print(
                        "automatic recovery (\(variant)): \(total) published, \(total - failed) confirmed, 2 proxy cuts + \(closedFromBroker) broker-side closes: \(lost) lost, \(duplicates) duplicates"
                    )
                    #expect(failed == 0)
                    #expect(closedFromBroker == 2)
                    #expect(lost == 0)
                }
            }
        }
    }
}
