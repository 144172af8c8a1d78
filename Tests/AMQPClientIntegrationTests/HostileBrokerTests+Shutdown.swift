import AMQPClient
import Foundation
import ServiceLifecycle
import Testing

/// Shutting down beside a hostile broker: a sample asked to stop, a service group whose other
/// service fails. Each must end within the connection's closeTimeout, whatever the broker does.
extension HostileBrokerTests {
    @Test("SIGINT stops the consumer sample within closeTimeout + 1 s while the broker has gone silent mid-frame")
    func sampleStopsWhileBrokerSilentMidFrame() async throws {
        let broker = try FakePeer.start("hostile_broker.py", "stop-mid-frame")
        defer { broker.stop() }
        let (consumer, output) = try SampleTests.launch(
            "user-events-consumer", url: "amqp://guest:guest@127.0.0.1:\(broker.port)/")
        defer { if consumer.isRunning { consumer.terminate() } }
        let lines = LineReader(output.fileHandleForReading)
        let banner = try await withTimeout(20, "the consumer to start") { try await lines.nextLine() }
        #expect(banner?.contains("Waiting for messages") == true, "\(banner ?? "no output")")
        let stopped = try await ContinuousClock().measure {
            consumer.interrupt()  // SIGINT
            try await withTimeout(30, "the consumer to exit") { await offThePool { consumer.waitUntilExit() } }
        }
        print("consumer sample: exited \(stopped) after SIGINT, the broker silent mid-frame")
        #expect(consumer.terminationReason == .exit)
        #expect(stopped < .seconds(6))  // closeTimeout (5 s by default) + 1 s
    }

    @Test("a ServiceGroup whose other service fails at once ends within closeTimeout + 1 s: AMQPConnection.run() ends on cancellation")
    func serviceGroupWithFailingService() async throws {
        let broker = try FakePeer.start("hostile_broker.py", "valid-delivery")
        defer { broker.stop() }
        var configuration = try AMQPConnection.Configuration(url: "amqp://guest:guest@127.0.0.1:\(broker.port)/")
        configuration.closeTimeout = .seconds(1)
        let connection = try await AMQPConnection.connect(to: configuration)
        let consumer = try await connection.openChannel().consume(queue: "probe", noAck: true)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: connection), .init(service: FailsAtOnce())], logger: .init(label: "test")))
        let clock = ContinuousClock()
        let start = clock.now
        // The group cancels the connection's run() when the other service throws; the fake
        // broker never answers connection.close, so closing takes closeTimeout.
        let ended = try await withTimeout(10, "the service group to end") { () -> String in
            do {
                try await group.run()
                return "no error"
            } catch {
                return String(describing: error)
            }
        }
        let took = start.duration(to: clock.now)
        withExtendedLifetime(consumer) {}
        print("service group with a failing service: ended after \(took): \(ended)")
        #expect(ended.contains("FailsAtOnce"))
        #expect(took < .seconds(2))
        #expect(!connection.isOpen)
    }

    struct FailsAtOnce: Service {
        struct Failure: Error, CustomStringConvertible {
            var description: String { "FailsAtOnce failed" }
        }

        func run() async throws { throw Failure() }
    }
}
