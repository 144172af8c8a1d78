import AMQPClient
import ArgumentParser
import Logging
import SampleSupport
import ServiceLifecycle
import Tracing
import UserEvents

/// Reacts to USER_REGISTERED events from the `user_events` queue and acknowledges each one
/// after handling it, as the seed's consumer does. Ctrl-C (SIGINT) or SIGTERM stop it cleanly.
@main
struct UserEventsConsumer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user-events-consumer",
        abstract: "Consume USER_REGISTERED events from the user_events queue.")

    @OptionGroup var broker: BrokerOptions
    @OptionGroup var observability: ObservabilityOptions

    @Option(help: "Exit after this many events (default: run until Ctrl-C).")
    var count: Int?

    @Option(help: "How many unacknowledged events the broker may send at once.")
    var prefetch: UInt16 = 10

    func run() async throws {
        lineBufferStandardOutput()
        let bootstrapped = observability.bootstrap()
        defer { bootstrapped.finish() }
        var logger = Logger(label: "user-events-consumer")
        logger.logLevel = .info
        let configuration = try broker.configuration(connectionName: "user-events-consumer")
        let connection = try await AMQPConnection.connect(to: configuration, logger: logger)
        let handler = UserEventHandler(connection: connection, count: count, prefetch: prefetch, logger: logger)

        // Shut down in reverse order: the handler stops consuming, then the connection closes.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: connection),
                    .init(service: handler, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigint, .sigterm],
                logger: logger))
        try await group.run()
    }
}

struct UserEventHandler: Service {
    let connection: AMQPConnection
    let count: Int?
    let prefetch: UInt16
    let logger: Logger

    func run() async throws {
        let channel = try await connection.openChannel()
        try await channel.declareQueue(UserEvent.queue, durable: true)
        try await channel.setPrefetch(count: prefetch)
        let consumer = try await channel.consume(queue: UserEvent.queue)
        print(" [*] Waiting for messages in \(UserEvent.queue). To exit press CTRL+C")

        try await cancelWhenGracefulShutdown {
            var received = 0
            // An event may come twice: redelivered after a lost connection, or published again by
            // a producer that never saw the broker's confirm. Handle each message id once. (A real
            // service keeps this in its database, in the same transaction as the handling.)
            var handled = Set<String>()
            for try await delivery in consumer {
                guard let event = UserEvent(json: delivery.body) else {
                    // A poison message would come back forever if requeued: drop it (or dead-letter
                    // it, when the queue has a dead-letter exchange).
                    logger.error("rejecting a message that is not a user event", metadata: ["body": "\(printable(delivery.bodyString, limit: 200))"])
                    try await delivery.reject(requeue: false)
                    continue
                }
                if let id = delivery.properties.messageID, !handled.insert(id).inserted {
                    logger.info("skipping an event handled already", metadata: ["message_id": "\(printable(id))"])
                    try await delivery.ack()
                    continue
                }
                // Handle the event here (e.g. send a welcome email), then acknowledge it. With a
                // tracer, this runs in a `process user_events` span in the producer's trace. The
                // event's text is the sender's: printed escaped.
                try await delivery.withProcessingSpan(relation: .child) { delivery in
                    if let trace = ServiceContext.current?.w3cTraceContext {
                        print(" [x] Received \(printable(event.type)) userId=\(event.data.userId) continued trace=\(trace.traceID)")
                    } else {
                        print(" [x] Received \(printable(event.type)) userId=\(event.data.userId)")
                    }
                    try await delivery.ack()
                }
                received += 1
                if let count, received >= count { break }
            }
        }
        // No channel.close(): the channel closes with the connection, the next service to stop.
        // One close, bounded by closeTimeout whatever the broker does, not one per channel.
    }
}
