import AMQPClient
import Foundation
import Logging

// Handling one delivery: its handler, then the ack; retries by the subscription's policy; the
// parking lot for what no handler can take.

extension EventBus {
    /// The subscription's handling as one function: its middleware pipeline around the handler
    /// of each event type (see ``EventMiddleware`` for the order). Built once per subscription.
    func pipeline(for subscription: EventSubscription) -> @Sendable (IncomingEvent) async throws -> Void {
        let (handlers, coder) = (subscription.handlers, configuration.coder)
        var layers: [any EventMiddleware] = []
        if let store = subscription.deduplication { layers.append(DeduplicationMiddleware(store: store)) }
        layers += configuration.middleware + subscription.middleware
        if subscription.retryPolicy.immediateRetries > 0 {
            layers.append(ImmediateRetryMiddleware(retries: subscription.retryPolicy.immediateRetries))
        }
        layers.append(ProcessingSpanMiddleware())
        if let limit = subscription.handlerTimeout { layers.append(TimeoutMiddleware(limit: limit)) }
        return chain(layers) { event in
            // Checked before the pipeline runs: every type that reaches here has a handler.
            try await handlers[event.metadata.type]!.handle(
                event.body, wrapped: event.payloadIsWrapped, context: event.context, coder: coder)
        }
    }

    /// Runs the delivery through the subscription's pipeline and settles it: acknowledged once
    /// handled, retried later by the subscription's policy when the pipeline throws, parked when
    /// nothing can handle it.
    func handle(
        _ delivery: AMQPDelivery, for subscription: EventSubscription, queue: String,
        pipeline: @Sendable (IncomingEvent) async throws -> Void
    ) async {
        let parkingLot = subscription.parkingLot
        let received: ReceivedEnvelope
        switch ReceivedEnvelope.read(delivery.properties, body: delivery.body) {
        case .success(let envelope): received = envelope
        case .failure(let why):
            await park(delivery, from: queue, in: parkingLot, reason: why.code, error: why.message)
            return
        }
        let metadata = received.metadata
        guard subscription.handlers[metadata.type] != nil else {
            await park(delivery, from: queue, in: parkingLot, reason: .unknownEventType, error: "no handler for \(metadata.type)")
            return
        }
        let context = EventContext(delivery: delivery, metadata: metadata, queue: queue, bus: self)
        do {
            try await pipeline(
                IncomingEvent(context: context, body: received.body, payloadIsWrapped: received.payloadIsWrapped, delivery: delivery))
        } catch let undecodable as EventHandler.DecodingFailed {
            await park(delivery, from: queue, in: parkingLot, reason: .decodingFailed, error: "\(undecodable.underlying)")
            return
        } catch let unsupported as EventHandler.UnsupportedVersion {
            await park(delivery, from: queue, in: parkingLot, reason: .unsupportedSchemaVersion, error: unsupported.description)
            return
        } catch {
            await handlerFailed(delivery, metadata: metadata, error: error, subscription: subscription, queue: queue)
            return
        }
        do {
            try await delivery.ack()
        } catch {
            logger.debug(
                "could not acknowledge a handled event; the broker will deliver it again",
                metadata: [LoggingKeys.messageID: .untrusted(metadata.messageID), LoggingKeys.error: .untrusted(error)])
        }
    }

    /// The handler threw on every immediate try: a delayed retry if the policy has one left and
    /// the error allows it, else the parking lot.
    private func handlerFailed(
        _ delivery: AMQPDelivery, metadata: EventMetadata, error: any Error, subscription: EventSubscription, queue: String
    ) async {
        let headers = delivery.properties.headers ?? [:]
        let step = (headers[EnvelopeHeader.retryAttempt]?.integerValue ?? 0) + 1
        let calls = (headers[EnvelopeHeader.attempts]?.integerValue ?? 0) + 1 + subscription.retryPolicy.immediateRetries
        let now = Date()
        var failureHeaders: AMQPFieldTable = [
            EnvelopeHeader.attempts: .int64(Int64(calls)),
            EnvelopeHeader.lastFailureAt: .timestamp(now),
            EnvelopeHeader.lastError: .string(String("\(error)".prefix(1000))),
        ]
        if headers[EnvelopeHeader.firstFailureAt] == nil { failureHeaders[EnvelopeHeader.firstFailureAt] = .timestamp(now) }
        if headers[EnvelopeHeader.originalExchange] == nil {
            failureHeaders[EnvelopeHeader.originalExchange] = .string(delivery.exchange)
            failureHeaders[EnvelopeHeader.originalRoutingKey] = .string(delivery.routingKey)
        }
        let log: Logger.Metadata = [
            LoggingKeys.queue: .untrusted(queue), LoggingKeys.eventType: .untrusted(metadata.type),
            LoggingKeys.messageID: .untrusted(metadata.messageID), LoggingKeys.attempt: "\(calls)", LoggingKeys.error: .untrusted(error),
        ]
        if error is any NonRetryableError {
            logger.warning("an event handler failed for good; the event goes to the parking lot", metadata: log)
            await park(delivery, from: queue, in: subscription.parkingLot, reason: .nonRetryable, error: "\(error)", headers: failureHeaders)
            return
        }
        let policy = subscription.retryPolicy
        guard step <= policy.delays.count else {
            logger.warning("an event handler failed on every retry; the event goes to the parking lot", metadata: log)
            await park(
                delivery, from: queue, in: subscription.parkingLot, reason: .retriesExhausted, error: "\(error)",
                headers: failureHeaders)
            return
        }
        let delay = policy.delay(beforeStep: step, random: Double.random(in: 0...1))
        var properties = delivery.properties
        var retried = headers
        for (key, value) in failureHeaders { retried[key] = value }
        retried[EnvelopeHeader.retryAttempt] = .int64(Int64(step))
        properties.headers = retried
        properties.expiration = String(delay.ttlMilliseconds)
        do {
            let channel = try await publishing.get()
            try await channel.publish(
                delivery.body, exchange: "", routingKey: EventTopology.retryQueue(of: queue, step: step), mandatory: true,
                properties: properties
            ).confirmed()
            try await delivery.ack()
            logger.debug("an event handler failed; retrying later", metadata: log.merging([LoggingKeys.delay: "\(delay)"]) { $1 })
        } catch {
            logger.warning("could not schedule a retry; rejecting the event to the parking lot", metadata: log)
            try? await delivery.nack(requeue: false)
        }
    }

    /// Publishes a copy of the message to the parking lot with why, then acknowledges it. Should
    /// that fail, rejecting it still takes it there (without the why) by the queue's dead-lettering.
    func park(
        _ delivery: AMQPDelivery, from queue: String, in parkingLot: String?, reason: EventError.Code, error: String,
        headers extra: AMQPFieldTable = [:]
    ) async {
        var log: Logger.Metadata = [
            LoggingKeys.queue: .untrusted(queue), LoggingKeys.reason: .untrusted(reason), LoggingKeys.error: .untrusted(error.prefix(500)),
        ]
        if let id = delivery.properties.messageID { log[LoggingKeys.messageID] = .untrusted(id) }
        guard let parkingLot else {
            logger.warning("dropped a message no handler can take (a broadcast subscriber has no parking lot)", metadata: log)
            try? await delivery.ack()
            return
        }
        var properties = delivery.properties
        var headers = properties.headers ?? [:]
        headers[EnvelopeHeader.parkedReason] = .string(reason.description)
        headers[EnvelopeHeader.parkedError] = .string(String(error.prefix(1000)))
        headers[EnvelopeHeader.parkedFromQueue] = .string(queue)
        headers[EnvelopeHeader.parkedAt] = .timestamp(Date())
        if headers[EnvelopeHeader.originalExchange] == nil {
            headers[EnvelopeHeader.originalExchange] = .string(delivery.exchange)
            headers[EnvelopeHeader.originalRoutingKey] = .string(delivery.routingKey)
        }
        for (key, value) in extra { headers[key] = value }
        properties.headers = headers
        properties.expiration = nil
        do {
            let channel = try await publishing.get()
            try await channel.publish(
                delivery.body, exchange: "", routingKey: parkingLot, mandatory: true, properties: properties
            ).confirmed()
            try await delivery.ack()
            logger.warning("parked a message", metadata: log)
        } catch {
            logger.warning("could not park a message with its reason; rejecting it to the parking lot", metadata: log)
            try? await delivery.nack(requeue: false)
        }
    }
}
