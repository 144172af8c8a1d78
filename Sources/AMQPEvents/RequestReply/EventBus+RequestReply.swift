import Synchronization
import AMQPClient
import Foundation

extension EventBus {
    /// Sends `request` to the `queue` its responder consumes and waits for the typed response.
    ///
    /// - Throws: ``EventError`` with ``EventError/Code/timedOut`` when no reply came in time (the
    ///   request expires in the queue too, so a responder that comes back later does not act on
    ///   it), ``EventError/Code/noResponder`` when no queue takes it, or
    ///   ``EventError/Code/responderFailed`` with the responder's error.
    public func request<Request: AMQPRequest>(
        _ request: Request, to queue: String, timeout: Duration? = nil
    ) async throws(EventError) -> Request.Response {
        let timeout = timeout ?? configuration.requestTimeout
        let client = try await replies.get()
        let request = try envelopes([request], correlationID: nil, messageID: nil, headers: [:], envelope: .amqp)[0]
        let correlationID = request.metadata.messageID
        let expiration = String(max(1, timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000))
        /// Sends the request as the publish middleware left it, with what request/reply needs.
        let send: @Sendable ([OutgoingEvent]) async throws(EventError) -> Void = { events throws(EventError) in
            for event in events {
                var message = try self.outgoing(event)
                message.properties.correlationID = correlationID
                message.properties.replyTo = ReplyClient.replyTo
                message.properties.deliveryMode = .transient
                message.properties.expiration = expiration
                do {
                    _ = try await client.channel.publish(message.body, exchange: "", routingKey: queue, properties: message.properties)
                } catch {
                    let error = AMQPError.wrap(error)
                    throw EventError(code: .publishFailed, message: "the request was not published: \(error.message)", underlying: error)
                }
            }
        }
        let reply: AMQPDelivery
        do {
            reply = try await client.request(correlationID: correlationID, to: queue, timeout: timeout) { () throws(EventError) in
                let event = OutgoingEvent(
                    metadata: request.metadata, body: request.payload, exchange: "", routingKey: queue, envelope: .amqp)
                if configuration.publishMiddleware.isEmpty {
                    try await send([event])
                } else {
                    try await throughPublishMiddleware([event], send)
                }
            }
        } catch let error as EventError {
            throw error
        } catch is CancellationError {
            throw EventError(code: .timedOut, message: "the request was cancelled")
        } catch {
            throw EventError.broker("requesting \(Request.eventType)", AMQPError.wrap(error))
        }
        if case .string(let failure) = reply.properties.headers?[EnvelopeHeader.replyError] {
            throw EventError(code: .responderFailed, message: failure)
        }
        do {
            return try configuration.coder.decode(Request.Response.self, from: reply.body)
        } catch {
            throw EventError(code: .decodingFailed, message: "the reply to \(Request.eventType) did not decode: \(error)")
        }
    }

    /// Answers requests of one type from `queue` (declared, durable) until cancelled or a graceful
    /// shutdown, `concurrency` at once. A handler's error goes back to the requester as
    /// ``EventError/Code/responderFailed``. The bus's middleware (``EventBus/Configuration/middleware``)
    /// runs around each handler call; `timeout` limits one (it then fails with ``EventError/Code/timedOut``).
    public func respond<Request: AMQPRequest>(
        to queue: String, with type: Request.Type, concurrency: Int = 1, timeout: Duration? = nil,
        _ handler: @escaping @Sendable (Request, EventContext) async throws -> Request.Response
    ) async throws(EventError) {
        try await startResponder(to: queue, with: type, concurrency: concurrency, timeout: timeout, handler).run()
    }

    /// Declares a responder's queue and consumes it; the result answers the requests when run.
    /// (An ``EventService`` starts its responders with its subscriptions, before it runs any.)
    func startResponder<Request: AMQPRequest>(
        to queue: String, with type: Request.Type, concurrency: Int, timeout: Duration?,
        _ handler: @escaping @Sendable (Request, EventContext) async throws -> Request.Response
    ) async throws(EventError) -> StartedResponder {
        let check = EventSubscription(.workQueue(queue: queue), concurrency: concurrency)
        try check.validate()
        let (channel, consumer) = try await openConsumer(prefetch: check.effectivePrefetch, "requests") { channel throws(EventError) in
            do {
                return try await channel.declareQueue(queue, durable: true).name
            } catch {
                throw EventError.broker("declaring \(queue)", AMQPError.wrap(error))
            }
        }
        return StartedResponder { () async throws(EventError) in
            do throws(EventError) {
                try await self.consumeConcurrently(consumer, concurrency: concurrency) { delivery in
                    await self.answer(delivery, on: channel, queue: queue, timeout: timeout, handler)
                }
            } catch {
                await channel.close()
                throw error
            }
            await channel.close()
        }
    }

    /// Declares a responder's queue, so that requests sent before it runs wait for it.
    public func declareResponder(queue: String) async throws(EventError) {
        do {
            try await publishing.get().declareQueue(queue, durable: true)
        } catch let error as EventError {
            throw error
        } catch {
            throw EventError.broker("declaring \(queue)", AMQPError.wrap(error))
        }
    }

    private func answer<Request: AMQPRequest>(
        _ delivery: AMQPDelivery, on channel: AMQPChannel, queue: String, timeout: Duration?,
        _ handler: @escaping @Sendable (Request, EventContext) async throws -> Request.Response
    ) async {
        guard let replyTo = delivery.properties.replyTo, let correlationID = delivery.properties.correlationID else {
            logger.warning("dropped a request without reply_to or correlation_id", metadata: [LoggingKeys.queue: .untrusted(queue)])
            try? await delivery.ack()
            return
        }
        var properties = AMQPProperties(correlationID: correlationID, type: Request.Response.eventType)
        var body: [UInt8] = []
        do {
            let metadata = EventMetadata(delivery.properties) ?? EventMetadata(type: Request.eventType)
            let context = EventContext(delivery: delivery, metadata: metadata, queue: queue, bus: self)
            let request = try configuration.coder.decode(Request.self, from: delivery.body)
            // The bus's middleware, the processing span and the timeout around the handler, as for
            // a subscription; the response comes back through the box.
            let answered = Mutex<Request.Response?>(nil)
            var layers = configuration.middleware + [ProcessingSpanMiddleware() as any EventMiddleware]
            if let timeout { layers.append(TimeoutMiddleware(limit: timeout)) }
            try await chain(layers) { event in
                let response = try await handler(request, event.context)
                answered.withLock { $0 = response }
            }(IncomingEvent(context: context, body: delivery.body, payloadIsWrapped: false, delivery: delivery))
            guard let response = answered.withLock({ $0 }) else {
                throw EventError(code: .responderFailed, message: "a middleware settled the request without calling the handler")
            }
            var outgoing = try envelopes([response], correlationID: correlationID, messageID: nil, headers: [:])[0]
            outgoing.properties.correlationID = correlationID
            outgoing.properties.deliveryMode = .transient
            (properties, body) = (outgoing.properties, outgoing.body)
        } catch {
            properties.headers = [EnvelopeHeader.replyError: .string(String("\(error)".prefix(1000)))]
        }
        do {
            _ = try await channel.publish(body, exchange: "", routingKey: replyTo, properties: properties)
        } catch {
            logger.debug("could not send a reply", metadata: [LoggingKeys.error: .untrusted(error)])
        }
        try? await delivery.ack()
    }
}

/// A responder whose queue is declared and consumed: ``run`` answers its requests until the task
/// is cancelled, a graceful shutdown begins or the consumer ends, then closes its channel.
struct StartedResponder: Sendable {
    let run: @Sendable () async throws(EventError) -> Void
}
