import AMQPClient
import CoreMetrics
import Foundation
import Logging
import Synchronization
import Testing

/// The broker the integration tests use: `$AMQP_URL`, else RabbitMQ on 127.0.0.1:5672.
/// scripts/test.sh starts one. With no broker the tests fail; they never skip.
enum TestBroker {
    static let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/"

    static var configuration: AMQPConnection.Configuration {
        get throws {
            var configuration = try AMQPConnection.Configuration(url: url)
            configuration.connectionName = "AMQPClientIntegrationTests"
            configuration.connectTimeout = .seconds(5)
            return configuration
        }
    }

    static func connect(
        metricsFactory: (any MetricsFactory)? = nil,
        _ adjust: (inout AMQPConnection.Configuration) -> Void = { _ in }
    ) async throws -> AMQPConnection {
        var configuration = try configuration
        adjust(&configuration)
        return try await AMQPConnection.connect(to: configuration, metricsFactory: metricsFactory)
    }

    /// The test certificates `scripts/broker.sh` makes for its TLS listener.
    static let tlsDirectory: URL = {
        if let directory = ProcessInfo.processInfo.environment["AMQP_TLS_DIR"] { return URL(fileURLWithPath: directory) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".broker/tls")
    }()

    static func tlsFile(_ name: String) -> String { tlsDirectory.appendingPathComponent(name).path }

    static var tlsPort: Int { ProcessInfo.processInfo.environment["AMQPS_PORT"].flatMap(Int.init) ?? 5671 }

    /// The test broker over TLS, trusting the test CA.
    static var tlsConfiguration: AMQPConnection.Configuration {
        get throws {
            var configuration = try configuration
            configuration.host = "localhost"
            configuration.port = tlsPort
            configuration.tls = .init(caCertificateFile: tlsFile("ca.pem"))
            return configuration
        }
    }

    /// A queue or exchange name no other test uses.
    static func uniqueName(_ prefix: String = #function) -> String {
        let base = prefix.prefix(while: { $0 != "(" })
        return "test.\(base).\(UUID().uuidString.prefix(8))"
    }
}

/// Connects to the test broker (with `adjust` applied to its configuration), runs `body`, and
/// closes the connection however `body` ends, waiting for the close (as valkey-swift's
/// `withValkeyClient` does): a test leaves no connection behind, whether it passes or throws.
func withTestConnection<Result>(
    _ adjust: (inout AMQPConnection.Configuration) -> Void = { _ in },
    _ body: (AMQPConnection) async throws -> Result
) async throws -> Result {
    try await withTestConnection(TestBroker.connect(adjust), body)
}

/// Runs `body` with a connection the test opened its own way, and closes it however `body` ends.
func withTestConnection<Result>(
    _ connection: AMQPConnection,
    _ body: (AMQPConnection) async throws -> Result
) async throws -> Result {
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

/// Declares `queue` on `channel`, runs `body`, and deletes the queue however `body` ends
/// (best effort: the channel may have closed).
func withTestQueue<Result>(
    _ queue: String, durable: Bool = false, on channel: AMQPChannel,
    _ body: () async throws -> Result
) async throws -> Result {
    try await channel.declareQueue(queue, durable: durable)
    do {
        let result = try await body()
        _ = try? await channel.deleteQueue(queue)
        return result
    } catch {
        _ = try? await channel.deleteQueue(queue)
        throw error
    }
}

/// A queue of the test's own, on a connection of its own, for setting up and checking what the
/// connection under test did.
struct ScratchQueue: Sendable {
    let name: String
    let connection: AMQPConnection
    let channel: AMQPChannel
}

/// Runs `body` with a ``ScratchQueue``, then deletes the queue and closes its connection
/// however `body` ends.
func withScratchQueue<Result>(
    durable: Bool = false, _ prefix: String = #function, _ body: (ScratchQueue) async throws -> Result
) async throws -> Result {
    try await withTestConnection { connection in
        let channel = try await connection.openChannel()
        let name = TestBroker.uniqueName(prefix)
        return try await withTestQueue(name, durable: durable, on: channel) {
            try await body(ScratchQueue(name: name, connection: connection, channel: channel))
        }
    }
}

struct TimedOut: Error, CustomStringConvertible {
    let seconds: Double
    let what: String
    var description: String { "timed out after \(seconds)s waiting for \(what)" }
}

/// The pause between two checks of a bounded wait. It leaves the cooperative threads to the
/// work being waited for (a `Task.yield()` loop keeps one busy), and it ends the loop when the
/// wait's timeout cancels it (a yield does not, so a timed-out loop would spin on).
func pollPause() async throws {
    try await Task.sleep(for: .milliseconds(1))
}

/// Runs `body`, failing with ``TimedOut`` if it has not finished after `seconds`: a bound on
/// a wait, so a broken client fails the test instead of hanging it. The body is cancelled on
/// timeout but not waited for, so even a body stuck in a blocking call cannot hang the test.
func withTimeout<T: Sendable>(
    _ seconds: Double,
    _ what: String = "the operation",
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = Mutex<CheckedContinuation<T, any Error>?>(nil)
    let finish: @Sendable (Result<T, any Error>) -> Void = { result in
        outcome.withLock { continuation in
            continuation?.resume(with: result)
            continuation = nil
        }
    }
    // The timer must not outlive a body that finished in time: thousands of waits would add up.
    let timer = TimerHandle()
    return try await withCheckedThrowingContinuation { continuation in
        outcome.withLock { $0 = continuation }
        let work = Task {
            do { finish(.success(try await body())) } catch { finish(.failure(error)) }
            timer.cancel()
        }
        let sleeper = Task {
            try? await Task.sleep(for: .seconds(seconds))
            guard !Task.isCancelled else { return }
            finish(.failure(TimedOut(seconds: seconds, what: what)))
            work.cancel()
        }
        timer.set(sleeper)
    }
}

private final class TimerHandle: Sendable {
    private let task = Mutex<(task: Task<Void, Never>?, cancelled: Bool)>((nil, false))

    func set(_ task: Task<Void, Never>) {
        let cancelled = self.task.withLock { state in
            state.task = task
            return state.cancelled
        }
        if cancelled { task.cancel() }
    }

    func cancel() {
        let task = self.task.withLock { state in
            state.cancelled = true
            return state.task
        }
        task?.cancel()
    }
}

/// Expects `body` to throw an ``AMQPError`` and returns it.
func expectAMQPError(
    _ body: () async throws -> Void,
    sourceLocation: SourceLocation = #_sourceLocation
) async -> AMQPError? {
    do {
        try await body()
        Issue.record("expected an AMQPError, but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as AMQPError {
        return error
    } catch {
        Issue.record("expected an AMQPError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

extension AMQPConsumer.AsyncIterator {
    /// The next delivery, waiting at most `seconds`. (Copies of an iterator share one consumer.)
    mutating func next(within seconds: Double) async throws -> AMQPDelivery? {
        let iterator = self
        return try await withTimeout(seconds, "a delivery") {
            var iterator = iterator
            return try await iterator.next()
        }
    }
}

extension AMQPChannel {
    /// Polls the queue (passive declare) until `condition` holds, at most `seconds`: the broker
    /// settles acks, requeues and cancels asynchronously.
    @discardableResult
    func waitForQueue(
        _ name: String, within seconds: Double = 5, _ what: String = "the queue's counts",
        until condition: @escaping @Sendable (AMQPQueueInfo) -> Bool
    ) async throws -> AMQPQueueInfo {
        try await withTimeout(seconds, what) {
            while true {
                let info = try await self.declareQueue(name, passive: true)
                if condition(info) { return info }
                try await pollPause()
            }
        }
    }

    /// Polls with `basic.get` until a message arrives, at most `seconds`.
    func waitForMessage(from queue: String, noAck: Bool = true, within seconds: Double = 5) async throws -> AMQPDelivery {
        try await withTimeout(seconds, "a message in \(queue)") {
            while true {
                if let delivery = try await self.get(from: queue, noAck: noAck) { return delivery }
                try await pollPause()
            }
        }
    }
}

/// A Python test peer from `Tests/HostileBroker` (a fake broker, a TLS server) that prints
/// `PORT <n>` once it listens, and then what it saw.
struct FakePeer {
    let process: Process
    let port: Int
    /// The rest of what the script prints.
    let output: FileHandle

    /// A file next to the scripts, in `Tests/HostileBroker`.
    static func file(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("HostileBroker/\(name)").path
    }

    static func start(_ script: String, _ arguments: String...) throws -> FakePeer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", file(script)] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        // The script prints its port at once; a read returns as soon as it has.
        var line = ""
        while !line.contains("\n") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line += String(decoding: chunk, as: UTF8.self)
        }
        guard line.hasPrefix("PORT "), let port = Int(line.dropFirst(5).prefix { $0.isNumber }) else {
            process.terminate()
            throw Failed(description: "\(script) did not report its port: \(line)")
        }
        return FakePeer(process: process, port: port, output: pipe.fileHandleForReading)
    }

    func stop() {
        if process.isRunning { process.terminate() }
    }

    struct Failed: Error, CustomStringConvertible {
        let description: String
    }
}

/// A log handler that keeps every line, for tests of what the client logs.
struct RecordingLogHandler: LogHandler {
    struct Line: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: Logger.Metadata
    }

    /// Shared by the handler's copies (a `Logger` copies its handler when metadata is set).
    final class Lines: Sendable {
        private let lines = Mutex<[Line]>([])
        var all: [Line] { lines.withLock { $0 } }
        func append(_ line: Line) { lines.withLock { $0.append(line) } }
    }

    let lines: Lines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    /// A logger for the client, and the lines it logged.
    static func logger() -> (Logger, Lines) {
        let lines = Lines()
        return (Logger(label: "test") { _ in RecordingLogHandler(lines: lines) }, lines)
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        lines.append(Line(level: event.level, message: event.message.description, metadata: merged))
    }
}

/// What some tests need beyond a broker that answers on `$AMQP_URL`. `swift test` alone, against
/// any broker, skips such a test and says why in one line; `scripts/test.sh` provides all of it
/// and sets `AMQP_REQUIRE_ALL=1`, so that a missing piece fails the test instead of skipping it.
enum Requirements {
    static let enforced = ProcessInfo.processInfo.environment["AMQP_REQUIRE_ALL"] == "1"

    /// `true` when the requirement holds, or when nothing may be skipped.
    static func met(_ condition: @autoclosure () -> Bool) -> Bool { enforced || condition() }

    /// The test CA of `scripts/broker.sh`'s TLS listener (`$AMQP_TLS_DIR` or `.broker/tls`).
    static var tlsListener: Bool { FileManager.default.fileExists(atPath: TestBroker.tlsFile("ca.pem")) }

    /// `rabbitmqctl` on the test broker, through `scripts/broker.sh ctl` (a node the script started).
    static var brokerControl: Bool { ProcessInfo.processInfo.environment["AMQP_BROKER_CONTROL"] == "1" }

    /// The TLS variants of a parameterized test: both where a TLS listener is, else plain only
    /// (the TLS suite's skip says why).
    static var tlsVariants: [Bool] { met(tlsListener) ? [false, true] : [false] }
}
