import AMQPClient
import Foundation
import Testing

/// A hostile broker that makes the client wait: one that stops reading, one that breaks every
/// connection right after it recovered, one that never answers a recovery's handshake.
extension HostileBrokerTests {
    @Test("a broker that floods basic.cancel and stops reading: the stalled write ends the connection after writeTimeout")
    func floodCancelStopReading() async throws {
        // The cancel-ok replies fill both socket buffers, then every write stalls. Before
        // writeTimeout, only two heartbeat intervals (120 s here) ended it, and nothing without
        // heartbeats. Filling the buffers (some 4 MB of replies) took about 1 s in a debug build
        // and 3 s under AddressSanitizer; then 2 s pass without progress.
        let outcome = try await Self.run("flood-cancel-stop-reading", "--write-timeout", "2")
        // Timed by the probe: on a busy machine this process may read its lines late.
        let took = outcome.lines.first { $0.text.hasPrefix("probe: ended ") }
            .flatMap { Double($0.text.split(separator: " ")[2]) }.map { Duration.seconds($0) }
        print("hostile broker flood-cancel-stop-reading: ended \(took.map(String.init(describing:)) ?? "never") after consuming; \(outcome.error ?? "no error")")
        #expect(outcome.terminatedNormally, "the probe died of signal \(outcome.status)")
        #expect(outcome.error?.contains("code=connectionLost") == true, "\(outcome.output)")
        #expect(outcome.error?.contains("stopped reading") == true)
        #expect(took.map { $0 < .seconds(10) } == true)
    }

    @Test("a broker that drops every connection right after it recovered: the backoff keeps growing, no login storm")
    func reconnectStorm() async throws {
        let broker = try FakePeer.start("hostile_broker.py", "flap")
        defer { broker.stop() }
        var configuration = try AMQPConnection.Configuration(url: "amqp://guest:guest@127.0.0.1:\(broker.port)/")
        configuration.recovery.initialDelay = .milliseconds(20)
        configuration.recovery.maximumDelay = .milliseconds(320)
        configuration.closeTimeout = .seconds(1)
        let connection = try await AMQPConnection.connect(to: configuration)
        let events = connection.events()
        let consumer = try await connection.openChannel().consume(queue: "storm", noAck: true)
        // The fake counts logins for 3 s from the first, then stops listening and says how many.
        let lines = LineReader(broker.output)
        let logins = try await withTimeout(15, "the fake broker's 3 s of logins") {
            var counted = 0
            while let line = try await lines.nextLine() {
                if line.hasPrefix("LOGIN ") { counted += 1 }
                if line.hasPrefix("DONE ") { return counted }
            }
            throw FakePeer.Failed(description: "the fake broker ended without its count")
        }
        let closing = try await ContinuousClock().measure {
            try await withTimeout(10, "close()") { await connection.close() }
        }
        withExtendedLifetime(consumer) {}
        let losses = try await withTimeout(10, "the connection's events to end") {
            var losses = 0
            for await event in events {
                if case .connectionLost = event { losses += 1 }
            }
            return losses
        }
        print("reconnect storm: \(logins) logins in 3 s (initialDelay 20 ms, maximumDelay 320 ms), \(losses) connections lost; close() took \(closing)")
        // Growing from 20 ms to 320 ms: about a dozen. Restarting at 20 ms after each recovery: one
        // every 70 ms or so (45 here). Fewer on a busy machine: only the upper bound is the point.
        #expect(losses >= 1)  // the scenario ran: the fake dropped the connection at least once
        #expect(logins <= 25)
        #expect(closing < .seconds(3))
    }

    @Test("close() while a recovery attempt's handshake stalls: it returns within closeTimeout and the stalled socket closes at once")
    func closeDuringStalledRecovery() async throws {
        let broker = try FakePeer.start("hostile_broker.py", "stall-after-first")
        defer { broker.stop() }
        var configuration = try AMQPConnection.Configuration(url: "amqp://guest:guest@127.0.0.1:\(broker.port)/")
        configuration.connectTimeout = .seconds(10)
        configuration.closeTimeout = .seconds(1)
        configuration.recovery.initialDelay = .milliseconds(20)
        let connection = try await AMQPConnection.connect(to: configuration)
        let events = connection.events()
        let consumer = try await connection.openChannel().consume(queue: "stall", noAck: true)
        // The fake closes the first connection after consume-ok; the second gets no connection.start.
        try await withTimeout(10, "the recovery to begin") {
            for await event in events {
                if case .recovering = event { return }
            }
            throw FakePeer.Failed(description: "the events ended before a recovery")
        }
        let lines = LineReader(broker.output)
        try await withTimeout(10, "the recovery's handshake to stall") {
            while let line = try await lines.nextLine() {
                if line.hasPrefix("STALLED ") { return }
            }
            throw FakePeer.Failed(description: "the fake broker ended before a stalled handshake")
        }
        let start = ContinuousClock.now
        try await withTimeout(10, "close()") { await connection.close() }
        let returned = start.duration(to: .now)
        let seen = try await withTimeout(15, "the fake broker to see the stalled socket closed") {
            while let line = try await lines.nextLine() {
                if line.hasPrefix("CLOSED ") { return line }
            }
            throw FakePeer.Failed(description: "the fake broker ended before the socket closed")
        }
        let socketClosed = start.duration(to: .now)
        withExtendedLifetime(consumer) {}
        print("close during a stalled recovery handshake: close() returned after \(returned), the fake saw the socket closed after \(socketClosed) (\(seen))")
        // Before, the socket stayed open until connectTimeout (10 s) ended the login.
        #expect(returned < .milliseconds(1500))
        #expect(socketClosed < .milliseconds(1500))
    }
}
