import AMQPClient
import Foundation
import Synchronization
import Testing

extension RunAloneTests {
    /// The process's resident memory, in bytes.
    static func residentBytes() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let pages = statm.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test("soak: publishing and consuming for about 60 s with a cut every 10 s loses nothing, and memory stays flat")
    func soak() async throws {
        let seconds = Double(ProcessInfo.processInfo.environment["AMQP_SOAK_SECONDS"] ?? "") ?? 60
        let warmUp = Duration.seconds(seconds / 6)
        let capacity = 4_000_000  // counters allocated up front, so the test itself does not grow
        let queue = TestBroker.uniqueName()
        let proxy = try TCPProxy(targetPort: try TestBroker.configuration.port)
        defer { proxy.stop() }
        func connect() async throws -> AMQPConnection {
            try await TestBroker.connect {
                $0.host = "127.0.0.1"
                $0.port = proxy.port
                $0.recovery = .fast(republishUnconfirmed: true)
            }
        }
        let publisher = try await connect()
        try await withTestConnection(publisher) { publisher in
            let consumer = try await connect()
            try await withTestConnection(consumer) { consumer in

                let consumerChannel = try await consumer.openChannel()
                try await withTestQueue(queue, on: consumerChannel) {
                    try await consumerChannel.setPrefetch(count: 500)
                    let deliveries = try await consumerChannel.consume(queue: queue)
                    let published = Counter()
                    let consuming = Task { () throws -> (distinct: Int, duplicates: Int, lost: Int) in
                        var counts = [UInt8](repeating: 0, count: capacity)
                        var distinct = 0
                        var duplicates = 0
                        for try await delivery in deliveries {
                            if let index = Int(delivery.bodyString) {
                                if counts[index] == 0 { distinct += 1 } else { duplicates += 1 }
                                counts[index] = 1
                            }
                            try await delivery.ack()
                            if distinct == published.target { break }
                        }
                        let total = published.target
                        return (distinct, duplicates, (0..<min(total, capacity)).count { counts[$0] == 0 })
                    }

                    let channel = try await publisher.openChannel()
                    try await channel.enablePublisherConfirms()
                    let start = ContinuousClock.now
                    var nextCut = start + .seconds(seconds / 6)
                    var cuts = 0
                    var warmMemory: Int?
                    var next = 0
                    while ContinuousClock.now - start < .seconds(seconds), next + 200 <= capacity {
                        var batch: [AMQPPublishConfirmation] = []
                        for index in next..<next + 200 { batch.append(try await channel.publish("\(index)", routingKey: queue)) }
                        next += 200
                        try await withTimeout(30, "a batch of confirms") { [batch] in
                            for confirmation in batch { try await confirmation.confirmed() }
                        }
                        let now = ContinuousClock.now
                        if warmMemory == nil && now - start >= warmUp { warmMemory = Self.residentBytes() }
                        if now >= nextCut {
                            proxy.cutAll()
                            cuts += 1
                            nextCut = now + .seconds(seconds / 6)
                        }
                    }
                    let endMemory = Self.residentBytes()
                    published.finish(at: next)
                    // Wakes the consumer should it have caught up already.
                    try await channel.publish("end", routingKey: queue).confirmed()
                    let result = try await withTimeout(120, "the consumer to catch up") { try await consuming.value }
                    let warm = warmMemory ?? endMemory
                    let growth = Double(endMemory) / Double(max(warm, 1))
                    print(
                        "soak: \(next) published and confirmed over \(seconds) s with \(cuts) cuts; \(result.distinct) consumed, \(result.lost) lost, \(result.duplicates) duplicates; resident memory \(warm >> 20) MiB after warm-up, \(endMemory >> 20) MiB at the end (\(String(format: "%.2f", growth))x)"
                    )
                    #expect(cuts >= 4)
                    #expect(result.lost == 0)
                    #expect(result.distinct == next)
                    #expect(growth <= 1.10)
                }
            }
        }
    }
}

/// How many messages the soak test published, once it is done publishing.
final class Counter: Sendable {
    private let value = Atomic<Int>(.max)
    func finish(at total: Int) { value.store(total, ordering: .releasing) }
    var target: Int { value.load(ordering: .acquiring) }
}
