import AMQPClient
import Foundation
import Tracing

/// The broker the samples' broker tests use: `$AMQP_URL`, as `scripts/test.sh` sets it.
enum ExampleBroker {
    static let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/"
}

/// Runs `body` with a connection to the test broker (traced by `tracer`), closed afterwards.
func withExampleConnection<Result>(
    tracer: (any Tracer)? = nil, _ body: (AMQPConnection) async throws -> Result
) async throws -> Result {
    var configuration = try AMQPConnection.Configuration(url: ExampleBroker.url)
    configuration.connectTimeout = .seconds(5)
    let connection =
        if let tracer { try await AMQPConnection.connect(to: configuration, tracer: tracer) } else {
            try await AMQPConnection.connect(to: configuration)
        }
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

struct NoMessage: Error, CustomStringConvertible {
    var queue: String
    var description: String { "no message in \(queue) within 5 s" }
}

extension AMQPChannel {
    /// The next message in `queue` (by `basic.get`), within 5 s.
    func waitForMessage(from queue: String) async throws -> AMQPDelivery {
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            if let delivery = try await get(from: queue, noAck: true) { return delivery }
            try await Task.sleep(for: .milliseconds(1))
        }
        throw NoMessage(queue: queue)
    }
}
