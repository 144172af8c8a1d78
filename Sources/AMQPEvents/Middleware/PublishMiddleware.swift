/// An event on its way to the broker: what a ``PublishMiddleware`` sees and may change.
public struct OutgoingEvent: Sendable {
    /// The envelope: a middleware may add headers, say, or set the correlation id.
    public var metadata: EventMetadata
    /// The encoded payload.
    public var body: [UInt8]
    /// Where it goes: the exchange (`""` for a work queue or a request) and the routing key.
    public let exchange: String
    /// The routing key it is published with.
    public let routingKey: String
    /// The envelope it is published in.
    public var envelope: EventEnvelope
}

/// Code that runs around every publish of the bus: `publish`, `send`,
/// ``EventBus/publish(encoded:metadata:to:routingKey:mandatory:envelope:)`` (an outbox relay)
/// and requests. It sees the events of one call (one, or a batch), may change their envelopes
/// and bodies, refuse them by throwing, or time the call: `next` returns once the broker has
/// confirmed every event (for a request, once it is sent).
///
/// ```swift
/// /// Stamps every event this service emits with the tenant of the task that emits it.
/// struct StampTenant: PublishMiddleware {
///     func publish(_ events: [OutgoingEvent], next: @escaping @Sendable ([OutgoingEvent]) async throws -> Void) async throws {
///         guard let tenant = Tenant.current else { throw MissingTenant() }
///         try await next(events.map { var event = $0; event.metadata.headers["x-tenant"] = .string(tenant); return event })
///     }
/// }
/// let bus = EventBus(connection: connection, configuration: .init(appID: "orders", publishMiddleware: [StampTenant()]))
/// ```
///
/// An error a middleware throws reaches the caller as ``EventError/Code/publishFailed`` (an
/// ``EventError`` it throws, as it is); nothing is published then. What the bus sends for its
/// own work (retries, parking, replies) does not pass through it.
public protocol PublishMiddleware: Sendable {
    /// Runs around the publish of one call's events.
    ///
    /// - Parameters:
    ///   - events: the events of the call, one or a batch.
    ///   - next: publishes the events it is given, changed or not; returns once the broker has
    ///     confirmed them all.
    func publish(_ events: [OutgoingEvent], next: @escaping @Sendable ([OutgoingEvent]) async throws -> Void) async throws
}

extension EventBus {
    /// Publishes `messages` through the bus's publish middleware, then with confirms.
    func publishEvents(
        _ messages: [Outgoing], exchange: String, routingKey: String, mandatory: Bool
    ) async throws(EventError) {
        guard !configuration.publishMiddleware.isEmpty else {
            return try await publishAllConfirmed(messages, exchange: exchange, routingKey: routingKey, mandatory: mandatory)
        }
        let events = messages.map {
            OutgoingEvent(metadata: $0.metadata, body: $0.payload, exchange: exchange, routingKey: routingKey, envelope: $0.envelope)
        }
        try await throughPublishMiddleware(events) { events throws(EventError) in
            var messages: [Outgoing] = []
            for event in events { messages.append(try self.outgoing(event)) }
            try await self.publishAllConfirmed(messages, exchange: exchange, routingKey: routingKey, mandatory: mandatory)
        }
    }

    /// Runs the publish middleware around `publish`, with the errors the bus promises.
    func throughPublishMiddleware(
        _ events: [OutgoingEvent], _ publish: @escaping @Sendable ([OutgoingEvent]) async throws(EventError) -> Void
    ) async throws(EventError) {
        let innermost: @Sendable ([OutgoingEvent]) async throws -> Void = { events in try await publish(events) }
        let pipeline = configuration.publishMiddleware.reversed().reduce(innermost) { next, layer in
            { events in try await layer.publish(events, next: next) }
        }
        do {
            try await pipeline(events)
        } catch let error as EventError {
            throw error
        } catch {
            let type = events.first?.metadata.type ?? "an event"
            throw EventError(code: .publishFailed, message: "a publish middleware refused \(type): \(error)")
        }
    }

    /// The message an outgoing event's envelope and body make.
    func outgoing(_ event: OutgoingEvent) throws(EventError) -> Outgoing {
        try message(metadata: event.metadata, payload: event.body, envelope: event.envelope)
    }
}
