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
        // A second property-flag word: librabbitmq 0.11 would decode headers nested 5000 deep
        // that a one-word check never saw (a stack overflow in a debug build).
        Scenario(name: "continuation-flags", replyCode: 502),
        // Replies to nothing the client asked: taken as its own close or cancel, they would end
        // the connection or the consumer as if the application had, skipping recovery.
        Scenario(name: "unsolicited-close-ok", replyCode: 505),
        Scenario(name: "unsolicited-cancel-ok", replyCode: 505),
        // 20,000 values in the headers, over the limit of 10,000.
        Scenario(name: "wide-headers", replyCode: 502),
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
        let outcome = try await Self.run("valid-delivery", "--exit-after", "1")
        print("hostile broker valid-delivery: \(outcome.peakKiB) KiB peak")
        #expect(outcome.output.contains("probe: delivery of 5 bytes"), "\(outcome.output)")
    }

    @Test("consume-ok and a protocol violation in one TCP segment: the consume succeeds, then the connection ends with 501")
    func consumeOkWithViolation() async throws {
        let outcome = try await Self.run("consume-ok-with-violation")
        print("hostile broker consume-ok-with-violation: \(outcome.output.split(separator: "\n").joined(separator: " | "))")
        #expect(outcome.terminatedNormally, "the probe died of signal \(outcome.status)")
        // The frames before the refused one are handled: the consume-ok answers the consume.
        let consuming = outcome.lines.firstIndex { $0.text == "probe: consuming" }
        let failed = outcome.lines.firstIndex { $0.text.hasPrefix("probe: error") }
        #expect(consuming != nil, "\(outcome.output)")
        #expect(consuming.flatMap { consuming in failed.map { consuming < $0 } } == true)
        #expect(outcome.error?.contains("code=protocolError reply=501") == true, "\(outcome.output)")
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

    struct Outcome: Sendable {
        struct Line: Sendable {
            /// When the test read it, from the probe's start.
            let at: Duration
            let text: String
        }

        let lines: [Line]
        let status: Int32
        let terminatedNormally: Bool
        var output: String { lines.map(\.text).joined(separator: "\n") }
        var error: String? { lines.first { $0.text.hasPrefix("probe: error") }?.text }
        var peakKiB: Int {
            lines.compactMap { line in
                line.text.hasPrefix("probe: maxrss_kib=") ? Int(line.text.dropFirst("probe: maxrss_kib=".count)) : nil
            }.first ?? .max
        }

        /// When the first line starting with `prefix` came.
        func time(of prefix: String) -> Duration? { lines.first { $0.text.hasPrefix(prefix) }?.at }
    }

    /// Starts the fake broker with `scenario`, runs the probe (with `arguments`) against it, and
    /// waits at most `seconds` for it to exit, noting when each line it printed came.
    ///
    /// `measuringMemory`: under AddressSanitizer (scripts/test.sh), the probe keeps no freed
    /// memory in quarantine, which by design keeps up to 256 MiB of it resident: its peak then
    /// measures what the client holds, not what the sanitizer does.
    static func run(
        _ scenario: String, _ arguments: String..., within seconds: Double = 20, measuringMemory: Bool = false
    ) async throws -> Outcome {
        let broker = try FakePeer.start("hostile_broker.py", scenario)
        defer { broker.stop() }

        let probe = Process()
        probe.executableURL = try SampleTests.executable("AMQPProbe")
        probe.arguments = ["--url", "amqp://guest:guest@127.0.0.1:\(broker.port)/"] + arguments
        if measuringMemory {
            var environment = ProcessInfo.processInfo.environment
            environment["ASAN_OPTIONS"] = [environment["ASAN_OPTIONS"], "quarantine_size_mb=0"].compactMap { $0 }
                .joined(separator: ":")
            probe.environment = environment
        }
        let probeOutput = Pipe()
        probe.standardOutput = probeOutput
        let started = ContinuousClock.now
        try probe.run()
        defer { if probe.isRunning { probe.terminate() } }
        let reader = LineReader(probeOutput.fileHandleForReading)
        return try await withTimeout(seconds, "the probe to exit") {
            var lines: [Outcome.Line] = []
            while let line = try await reader.nextLine() {
                lines.append(Outcome.Line(at: started.duration(to: .now), text: line))
            }
            await offThePool { probe.waitUntilExit() }
            return Outcome(lines: lines, status: probe.terminationStatus, terminatedNormally: probe.terminationReason == .exit)
        }
    }
}
