import AMQPClient
import ArgumentParser
import Foundation
import SampleSupport
import Tracing
import UserEvents

/// Emits USER_REGISTERED events to the durable `user_events` queue, as the seed's producer does.
@main
struct UserEventsProducer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user-events-producer",
        abstract: "Publish USER_REGISTERED events to the user_events queue.")

    @OptionGroup var broker: BrokerOptions
    @OptionGroup var observability: ObservabilityOptions

    @Option(help: "How many events to publish, for userIds 12345, 12346, …")
    var count: Int = 1

    @Option(help: "Seconds to wait between events.")
    var interval: Double = 0

    func run() async throws {
        lineBufferStandardOutput()
        let bootstrapped = observability.bootstrap()
        defer { bootstrapped.finish() }
        var configuration = try broker.configuration(connectionName: "user-events-producer")
        // If the connection is lost (say, the broker restarts), it reconnects by itself and
        // publishes again whatever the broker had not confirmed: no event is lost, though one
        // may arrive twice (the consumer handles that).
        configuration.recovery.republishUnconfirmed = true
        try await AMQPConnection.withConnection(to: configuration) { connection in
            try await connection.withChannel { channel in
                // Durable queue + persistent messages: a registration survives a broker restart.
                // Confirms: an event counts as sent only once the broker has taken it.
                try await channel.declareQueue(UserEvent.queue, durable: true)
                try await channel.enablePublisherConfirms()
                for index in 0..<count {
                    let event = UserEvent.registered(userId: 12345 + index)
                    let properties = AMQPProperties(
                        contentType: "application/json",
                        deliveryMode: .persistent,
                        messageID: UUID().uuidString,
                        timestamp: Date(),
                        type: event.type,
                        appID: "user-events-producer")
                    // The event's own span: the client's `publish user_events` span is its child, and
                    // the consumer continues the trace from the message's traceparent header.
                    try await withSpan("emit \(event.type)", ofKind: .internal) { _ in
                        try await channel.publish(event.json, routingKey: UserEvent.queue, properties: properties).confirmed()
                        if let trace = ServiceContext.current?.w3cTraceContext {
                            print(" [x] Sent \(event.json) trace=\(trace.traceID)")
                        } else {
                            print(" [x] Sent \(event.json)")
                        }
                    }
                    if interval > 0 && index < count - 1 { try await Task.sleep(for: .seconds(interval)) }
                }
            }
        }
    }
}
