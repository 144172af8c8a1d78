import AMQPClient
import Foundation
import Testing

/// A broker that misbehaves on purpose (`Tests/HostileBroker/hostile_broker.py`), one way per
/// test, against `amqp-probe` in a process of its own: the client must end the connection with
/// a clear protocol error, exit normally (no crash signal) within a deadline, and keep its memory
/// bounded whatever the broker sends.
@Suite("A hostile broker")
struct HostileBrokerTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        let name: String
        /// The AMQP reply code the client should name.
        let replyCode: UInt16
        var testDescription: String { name }
    }

    static let scenarios: [Scenario] = [
        Scenario(name: "header-class", replyCode: 505),
        Scenario(name: "huge-body-size", replyCode: 501),
        Scenario(name: "deep-headers", replyCode: 502),
        Scenario(name: "deep-server-properties", replyCode: 502),
        Scenario(name: "unopened-channels", replyCode: 504),
        Scenario(name: "unknown-frame-type", replyCode: 501),
        Scenario(name: "body-without-header", replyCode: 505),
        Scenario(name: "second-deliver", replyCode: 505),
        Scenario(name: "too-much-body", replyCode: 505),
        Scenario(name: "oversized-frame", replyCode: 501),
        Scenario(name: "bad-frame-end", replyCode: 501),
        Scenario(name: "client-method", replyCode: 503),
    ]

    /// Peak memory the probe may reach, whatever the broker sends (it idles at about 26 MiB).
    static let memoryBoundKiB = 64 * 1024

    @Test("each misbehaviour is a protocol error that closes the connection: no crash, no hang, bounded memory",
          arguments: scenarios)
    func misbehaviour(_ scenario: Scenario) async throws {
        let outcome = try await Self.run(scenario.name)
        print("hostile broker \(scenario.name): exit \(outcome.status), \(outcome.peakKiB) KiB peak; \(outcome.error ?? "no error")")
        #expect(outcome.terminatedNormally, "the probe died of signal \(outcome.status)")
        #expect(outcome.error?.contains("code=protocolError reply=\(scenario.replyCode)") == true, "\(outcome.output)")
        #expect(outcome.peakKiB < Self.memoryBoundKiB)
    }

    @Test("the probe receives a well-formed delivery from the fake broker")
    func wellBehaved() async throws {
        let outcome = try await Self.run("valid-delivery", expectEnd: false)
        #expect(outcome.output.contains("probe: delivery of 5 bytes"), "\(outcome.output)")
    }

    @Test("a broker that keeps the connection but never replies: a call times out after callTimeout, its channel closes, close() returns")
    func silentBroker() async throws {
        let broker = try FakePeer.start("hostile_broker.py", "no-replies")
        defer { broker.stop() }
        var configuration = try AMQPConnection.Configuration(url: "amqp://guest:guest@127.0.0.1:\(broker.port)/")
        configuration.recovery = .disabled
        configuration.callTimeout = .milliseconds(500)
        configuration.closeTimeout = .milliseconds(500)
        let connection = try await AMQPConnection.connect(to: configuration)
        let channel = try await connection.openChannel()
        let clock = ContinuousClock()
        var error: AMQPError?
        let took = await clock.measure {
            error = await expectAMQPError { try await withTimeout(10, "the declaration") { _ = try await channel.declareQueue("q") } }
        }
        print("silent broker: the call failed after \(took): \(error.map(String.init(describing:)) ?? "no error")")
        #expect(error?.code == .timedOut)
        #expect(took < .seconds(3))
        #expect(!channel.isOpen)
        #expect(connection.isOpen)  // only the channel is given up
        let closing = try await clock.measure { try await withTimeout(10, "close()") { await connection.close() } }
        #expect(closing < .seconds(2))
    }

    struct Outcome {
        let output: String
        let status: Int32
        let terminatedNormally: Bool
        var error: String? { output.split(separator: "\n").first { $0.hasPrefix("probe: error") }.map(String.init) }
        var peakKiB: Int {
            output.split(separator: "\n").compactMap { line in
                line.hasPrefix("probe: maxrss_kib=") ? Int(line.dropFirst("probe: maxrss_kib=".count)) : nil
            }.first ?? .max
        }
    }

    /// Starts the fake broker with `scenario`, runs the probe against it, and waits at most 20 s.
    static func run(_ scenario: String, expectEnd: Bool = true) async throws -> Outcome {
        let broker = try FakePeer.start("hostile_broker.py", scenario)
        defer { broker.stop() }
        let port = broker.port

        let probe = Process()
        probe.executableURL = try SampleTests.executable("amqp-probe")
        probe.arguments = ["--url", "amqp://guest:guest@127.0.0.1:\(port)/"]
        let probeOutput = Pipe()
        probe.standardOutput = probeOutput
        try probe.run()
        defer { if probe.isRunning { probe.terminate() } }
        // A well-behaved broker keeps the connection open: read until the delivery, then stop the probe.
        var early = ""
        if !expectEnd {
            early = try await withTimeout(10, "the probe's first delivery") {
                var seen = ""
                while !seen.contains("delivery") {
                    let chunk = probeOutput.fileHandleForReading.availableData
                    if chunk.isEmpty { break }
                    seen += String(decoding: chunk, as: UTF8.self)
                }
                return seen
            }
            probe.terminate()
        }
        let finished = try await withTimeout(20, "the probe to exit") {
            let output = String(decoding: probeOutput.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            probe.waitUntilExit()
            return (output, probe.terminationStatus, probe.terminationReason == .exit)
        }
        return Outcome(output: early + finished.0, status: finished.1, terminatedNormally: finished.2)
    }
}
