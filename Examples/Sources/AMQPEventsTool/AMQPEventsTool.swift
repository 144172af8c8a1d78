import AMQPClient
import AMQPEvents
import ArgumentParser
import Foundation
import Logging

/// `amqp-events`: what an operator needs for any service's parking lot, whatever its events.
///
/// ```
/// amqp-events parked list orders.payment
/// amqp-events parked show orders.payment 6f1c…
/// amqp-events parked replay orders.payment [--id 6f1c…]
/// amqp-events parked purge orders.payment --yes
/// ```
@main
struct AMQPEventsTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp-events",
        abstract: "Inspect and repair the queues of AMQPEvents services.",
        subcommands: [Parked.self])
}

struct Parked: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A queue's parking lot: the messages no handler could take, and why.",
        subcommands: [List.self, Show.self, Replay.self, Purge.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per parked message: id, type, reason, error, the event.")
        @OptionGroup var broker: Broker
        @Argument(help: "The service's queue (not its parking lot).") var queue: String
        @Option(help: "At most this many.") var limit = 100

        func run() async throws {
            try await broker.withBus { bus in
                let parked = try await bus.parkedMessages(of: queue, limit: limit)
                for message in parked { print(message) }
                print("\(parked.count) parked in \(LogText.escaped(EventTopology.parkingLot(of: queue), limit: 255))")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Everything about one parked message: properties, headers, body.")
        @OptionGroup var broker: Broker
        @Argument(help: "The service's queue.") var queue: String
        @Argument(help: "The message id.") var messageID: String

        func run() async throws {
            try await broker.withBus { bus in
                guard let message = try await bus.parkedMessages(of: queue, limit: 10_000).first(where: { $0.messageID == messageID })
                else { throw ValidationError("no parked message with that id in \(queue)'s parking lot") }
                print(message)
                print("content type: \(LogText.escaped(message.properties.contentType ?? "-", limit: 255))")
                print("correlation id: \(LogText.escaped(message.properties.correlationID ?? "-", limit: 255))")
                for (key, value) in (message.properties.headers ?? [:]).sorted(by: { $0.key < $1.key }) {
                    print("header \(LogText.escaped(key, limit: 255)): \(LogText.escaped("\(value)", limit: 1024))")
                }
                print("body (\(message.body.count) bytes): \(message.summary(limit: 64 * 1024))")
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move parked messages back to their queue, with their retry count reset.")
        @OptionGroup var broker: Broker
        @Argument(help: "The service's queue.") var queue: String
        @Option(help: "Only the message with this id (repeatable); all of them when none is given.") var id: [String] = []

        func run() async throws {
            try await broker.withBus { bus in
                let moved = try await bus.replayParked(of: queue, messageIDs: id.isEmpty ? nil : Set(id))
                print("moved \(moved) back to \(LogText.escaped(queue, limit: 255))")
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every parked message of a queue.")
        @OptionGroup var broker: Broker
        @Argument(help: "The service's queue.") var queue: String
        @Flag(help: "Confirm: the messages are gone for good.") var yes = false

        func run() async throws {
            guard yes else { throw ValidationError("purging deletes the parked messages for good: add --yes") }
            try await broker.withBus { bus in
                let purged = try await bus.purgeParked(of: queue)
                print("purged \(purged) from \(LogText.escaped(EventTopology.parkingLot(of: queue), limit: 255))")
            }
        }
    }
}

/// Where the broker is.
struct Broker: ParsableArguments {
    // Resolved at run time, not shown as a default in --help: $AMQP_URL may hold a password.
    @Option(help: "The broker's AMQP URI (default: $AMQP_URL, else amqp://guest:guest@localhost:5672/). Visible to `ps`: prefer --url-file or $AMQP_URL when it holds a password.")
    var url: String?

    @Option(help: "A file whose first line is the broker's AMQP URI.")
    var urlFile: String?

    func resolvedURL() throws -> String {
        if let url { return url }
        if let urlFile {
            let contents = try String(contentsOfFile: urlFile, encoding: .utf8)
            guard let line = contents.split(whereSeparator: \.isNewline).first, !line.isEmpty else {
                throw ValidationError("\(urlFile) holds no URI")
            }
            return line.trimmingCharacters(in: .whitespaces)
        }
        return ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"
    }

    func withBus(_ body: (EventBus) async throws -> Void) async throws {
        var configuration = try AMQPConnection.Configuration(url: try resolvedURL())
        configuration.connectionName = "amqp-events"
        configuration.recovery = .disabled  // a one-shot command: fail fast
        var logger = Logger(label: "amqp-events")
        logger.logLevel = .warning
        try await AMQPConnection.withConnection(to: configuration, logger: logger) { connection in
            let bus = EventBus(connection: connection, logger: logger)
            try await body(bus)
            await bus.close()
        }
    }
}
