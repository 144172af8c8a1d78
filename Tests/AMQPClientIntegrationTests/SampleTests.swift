import AMQPClient
import Foundation
import Testing

/// Serialized: both tests use the `user_events` queue.
@Suite("user_events samples and the README quick start", .serialized)
struct SampleTests {
    @Test("the README's quick start runs as written")
    func quickStart() async throws {
        let purge = try await TestBroker.connect()
        try await purge.openChannel().declareQueue("user_events", durable: true)
        await purge.close()

        var received = 0
        // --- README quick start, verbatim but for the URL and the counter ---
        let connection = try await AMQPConnection.connect(url: TestBroker.url)
        let channel = try await connection.openChannel()
        try await channel.declareQueue("user_events", durable: true)

        try await channel.publish(#"{"type":"USER_REGISTERED","data":{"userId":12345}}"#,
                                  routingKey: "user_events",
                                  properties: AMQPProperties(contentType: "application/json", deliveryMode: .persistent))

        for try await delivery in try await channel.consume(queue: "user_events") {
            print("received", delivery.bodyString)
            received += 1
            try await delivery.ack()
            break
        }
        await connection.close()
        // ---
        #expect(received == 1)
        #expect(!connection.isOpen)
    }

    /// The probe sits next to the test bundle in the build folder; the samples in the build
    /// folder of the Examples package (`swift build --package-path Examples`).
    static func executable(_ name: String) throws -> URL {
        let buildFolder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Examples/.build/debug")
        let candidates = [buildFolder, buildFolder.deletingLastPathComponent(), examples].map { $0.appendingPathComponent(name) }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw SampleMissing(name: name, searched: candidates.map(\.path))
        }
        return found
    }

    /// Whether the samples are built (scripts/test.sh builds them; `swift test` alone may not have).
    static var samplesBuilt: Bool { (try? executable("user-events-consumer")) != nil }

    /// Starts a sample against the test broker (or `url`), its standard output on a pipe.
    static func launch(_ name: String, _ arguments: String..., url: String = TestBroker.url) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = try executable(name)
        process.arguments = arguments + ["--url", url]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        return (process, output)
    }

    struct SampleMissing: Error, CustomStringConvertible {
        let name: String
        let searched: [String]
        var description: String {
            "\(name) is not built (looked in \(searched)); run `swift build` (the probe) or `swift build --package-path Examples` (the samples) first"
        }
    }

    @Test(
        "a consumer with --count 3 and a producer with --count 3 exchange three events",
        .enabled(if: Requirements.met(SampleTests.samplesBuilt), "needs the samples built: swift build --package-path Examples"))
    func producerAndConsumerExchangeThreeEvents() async throws {
        // Start from an empty queue, so the consumer sees exactly the producer's three events.
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        try await channel.declareQueue("user_events", durable: true)
        try await channel.purgeQueue("user_events")
        await connection.close()

        let (consumer, consumerOutput) = try Self.launch("user-events-consumer", "--count", "3")
        defer { if consumer.isRunning { consumer.terminate() } }

        // Wait (bounded) until the consumer says it is waiting, so its consumer is registered.
        let lines = LineReader(consumerOutput.fileHandleForReading)
        let banner = try await withTimeout(20, "the consumer to start") { try await lines.nextLine() }
        #expect(banner == " [*] Waiting for messages in user_events. To exit press CTRL+C")

        let (producer, producerOutput) = try Self.launch("user-events-producer", "--count", "3")
        let producerHandle = producerOutput.fileHandleForReading
        let sent = try await withTimeout(20, "the producer") {
            await offThePool { () -> String in
                let data = producerHandle.readDataToEndOfFile()
                producer.waitUntilExit()
                return String(decoding: data, as: UTF8.self)
            }
        }
        #expect(producer.terminationStatus == 0)
        #expect(sent.contains(#" [x] Sent {"type":"USER_REGISTERED","data":{"userId":12345}}"#))

        var received: [String] = []
        for _ in 0..<3 {
            if let line = try await withTimeout(20, "a received event", { try await lines.nextLine() }) {
                received.append(line)
            }
        }
        #expect(received == (12345...12347).map { " [x] Received USER_REGISTERED userId=\($0)" })
        try await withTimeout(20, "the consumer to exit") { await offThePool { consumer.waitUntilExit() } }
        #expect(consumer.terminationStatus == 0)
    }

    @Test(
        "SIGTERM stops the consumer sample promptly while it recovers from a broker it cannot reach",
        .enabled(if: Requirements.met(SampleTests.samplesBuilt), "needs the samples built: swift build --package-path Examples"))
    func sigtermWhileRecovering() async throws {
        let proxy = try TCPProxy(targetPort: try TestBroker.configuration.port)
        defer { proxy.stop() }
        let url = "amqp://guest:guest@127.0.0.1:\(proxy.port)/"
        let (consumer, output) = try Self.launch("user-events-consumer", url: url)
        defer { if consumer.isRunning { consumer.terminate() } }
        let lines = LineReader(output.fileHandleForReading)
        _ = try await withTimeout(20, "the consumer to start") { try await lines.nextLine() }
        proxy.mode = .refuse  // the broker is gone: every reconnect attempt fails
        proxy.cutAll()
        let clock = ContinuousClock()
        let stopped = try await clock.measure {
            consumer.terminate()  // SIGTERM
            try await withTimeout(30, "the consumer to exit") { await offThePool { consumer.waitUntilExit() } }
        }
        print("consumer sample: stopped \(stopped) after SIGTERM while recovering")
        #expect(consumer.terminationReason == .exit)
        // Its channel's close and its connection's close each take at most closeTimeout (5 s).
        #expect(stopped < .seconds(12))
    }
}

/// Runs blocking work (reading a pipe, waiting for a process) on a thread of its own, so the
/// few threads of Swift's concurrency pool stay free for the tests' timeouts.
func offThePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}

/// Reads lines from a pipe without blocking a Swift concurrency thread.
final class LineReader: Sendable {
    private let handle: FileHandle
    init(_ handle: FileHandle) { self.handle = handle }

    func nextLine() async throws -> String? {
        let handle = self.handle
        return await offThePool {
            var bytes: [UInt8] = []
            while let byte = handle.readData(ofLength: 1).first {
                if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
                bytes.append(byte)
            }
            return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
        }
    }
}
