import AMQPClient
import Foundation
import Synchronization
import Testing

extension RunAloneTests {
    /// Restarts RabbitMQ's application on the test node: every connection is closed (320), the
    /// port refuses connections for a few seconds, then durable queues come back.
    static func restartBroker() async throws {
        try await rabbitmqctl("stop_app")
        try await rabbitmqctl("start_app")
    }

    static func connectRecovering(republish: Bool = false) async throws -> AMQPConnection {
        try await TestBroker.connect {
            $0.recovery = .fast(republishUnconfirmed: republish)
            $0.recovery.maximumDelay = .seconds(1)
        }
    }

    @Test("a broker restart while publishing and consuming: both sides recover by themselves; no confirmed message is lost")
    func brokerRestart() async throws {
        let queue = TestBroker.uniqueName()
        let publisher = try await Self.connectRecovering()
        try await withTestConnection(publisher) { publisher in
            let consumer = try await Self.connectRecovering()
            try await withTestConnection(consumer) { consumer in
                let publisherEvents = EventWatcher(publisher)
                let consumerEvents = EventWatcher(consumer)

                let consumerChannel = try await consumer.openChannel()
                try await withTestQueue(queue, durable: true, on: consumerChannel) {
                    try await consumerChannel.setPrefetch(count: 200)
                    let deliveries = try await consumerChannel.consume(queue: queue)
                    let (received, sink) = AsyncStream.makeStream(of: Int.self)
                    let consuming = Task {
                        defer { sink.finish() }
                        for try await delivery in deliveries {
                            sink.yield(Int(delivery.bodyString)!)
                            try await delivery.ack()
                        }
                    }
                    defer { consuming.cancel() }

                    // Publish in confirmed batches until the restart is over, and a little beyond.
                    let channel = try await publisher.openChannel()
                    try await channel.enablePublisherConfirms()
                    let restartDone = Flag()
                    var restart: Task<Void, any Error>?
                    var confirmed = Set<Int>()
                    var unknown = 0
                    var next = 0
                    var publishedAfterRestart = 0
                    while next < 1_000 || !restartDone.isSet || publishedAfterRestart < 500 {
                        if next == 500 {
                            restart = Task {
                                defer { restartDone.set() }
                                try await Self.restartBroker()
                            }
                        }
                        var batch: [(Int, AMQPPublishConfirmation)] = []
                        for index in next..<next + 50 {
                            let properties = AMQPProperties(deliveryMode: .persistent)
                            batch.append((index, try await channel.publish("\(index)", routingKey: queue, properties: properties)))
                        }
                        next += 50
                        if restartDone.isSet { publishedAfterRestart += 50 }
                        for (index, confirmation) in batch {
                            do {
                                try await withTimeout(60, "a confirm") { try await confirmation.confirmed() }
                                confirmed.insert(index)
                            } catch let error as AMQPError {
                                #expect(error.code == .outcomeUnknown)
                                unknown += 1
                            }
                        }
                    }
                    try await restart?.value
                    try await publisherEvents.recovered(within: 60)
                    try await consumerEvents.recovered(within: 60)

                    let (lost, duplicates) = try await withTimeout(60, "every confirmed message to be consumed") {
                        [confirmed] () -> (Int, Int) in
                        var missing = confirmed
                        var duplicates = 0
                        var seen = Set<Int>()
                        for await index in received {
                            if !seen.insert(index).inserted { duplicates += 1 }
                            missing.remove(index)
                            if missing.isEmpty { break }
                        }
                        return (missing.count, duplicates)
                    }
                    print(
                        "broker restart: \(next) published, \(confirmed.count) confirmed, \(unknown) outcome unknown; \(lost) confirmed lost, \(duplicates) duplicates"
                    )
                    #expect(lost == 0)
                    #expect(confirmed.count + unknown == next)
                    #expect(confirmed.count > 1_000)
                }
            }
        }
    }

    @Test(
        "the user_events samples exchange every event across a broker restart",
        .enabled(if: Requirements.met(SampleTests.samplesBuilt), "needs the samples built: swift build --package-path Examples"))
    func samplesRideOutRestart() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        try await channel.declareQueue("user_events", durable: true)
        try await channel.purgeQueue("user_events")
        await connection.close()

        let count = 20
        let (consumer, consumerOutput) = try SampleTests.launch("user-events-consumer", "--count", "\(count)")
        defer { if consumer.isRunning { consumer.terminate() } }
        let consumerLines = LineReader(consumerOutput.fileHandleForReading)
        let banner = try await withTimeout(20, "the consumer to start") { try await consumerLines.nextLine() }
        #expect(banner?.hasPrefix(" [*] Waiting") == true)

        let (producer, producerOutput) = try SampleTests.launch(
            "user-events-producer", "--count", "\(count)", "--interval", "0.1")
        defer { if producer.isRunning { producer.terminate() } }
        let producerLines = LineReader(producerOutput.fileHandleForReading)
        var sent: [String] = []
        for _ in 0..<5 {
            if let line = try await withTimeout(20, "a sent event", { try await producerLines.nextLine() }) {
                sent.append(line)
            }
        }
        try await Self.restartBroker()
        while let line = try await withTimeout(60, "the producer to go on after the restart", { try await producerLines.nextLine() }) {
            sent.append(line)
        }
        try await withTimeout(20, "the producer to exit") { await offThePool { producer.waitUntilExit() } }
        #expect(producer.terminationStatus == 0)
        #expect(sent.count == count)

        var userIDs = Set<Int>()
        for _ in 0..<count {
            guard let line = try await withTimeout(60, "a received event", { try await consumerLines.nextLine() }) else { break }
            if let id = line.split(separator: "=").last.flatMap({ Int($0) }) { userIDs.insert(id) }
        }
        print("samples across a broker restart: \(sent.count) sent, \(userIDs.count) distinct received")
        #expect(userIDs == Set(12345..<12345 + count))
        try await withTimeout(20, "the consumer to exit") { await offThePool { consumer.waitUntilExit() } }
        #expect(consumer.terminationStatus == 0)
    }
}

/// A flag one task raises and another reads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
