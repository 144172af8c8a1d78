public import AMQPClient
import Foundation

extension EventBus {
    /// Publishes `event` to a domain's topic exchange (declared, durable, if it is not yet), with
    /// its type as the routing key. Returns its envelope once the broker has confirmed it.
    ///
    /// - Parameters:
    ///   - event: the event to publish.
    ///   - exchange: the domain (`orders`).
    ///   - routingKey: the type name unless given.
    ///   - correlationID: the handled event's, inside a handler; else this event's message id.
    ///   - messageID: a fresh UUID unless given (give the same one to publish the same event again).
    ///   - headers: the application's own headers.
    ///   - mandatory: `true` (the default) makes an event no queue takes a ``EventError/Code/publishFailed``
    ///     error instead of a silent loss.
    ///   - envelope: the bus's ``Configuration/envelope`` unless given.
    /// - Throws: ``EventError`` with ``EventError/Code/publishFailed`` when the broker refused it, no
    ///   queue took it, or the connection failed ``Configuration/publishAttempts`` times before the
    ///   broker said.
    @discardableResult
    public func publish<Event: AMQPEvent>(
        _ event: Event, to exchange: String, routingKey: String? = nil, correlationID: String? = nil,
        messageID: String? = nil, headers: AMQPFieldTable = [:], mandatory: Bool = true, envelope: EventEnvelope? = nil
    ) async throws(EventError) -> EventMetadata {
        let channel = try await publishing.get()
        try await ensureExchange(exchange, on: channel)
        let outgoing = try envelopes([event], correlationID: correlationID, messageID: messageID, headers: headers, envelope: envelope)
        try await publishEvents(outgoing, exchange: exchange, routingKey: routingKey ?? Event.eventType, mandatory: mandatory)
        return outgoing[0].metadata
    }

    /// Publishes a batch of events to one exchange and waits for all the broker's confirms at once.
    /// Every event is published (and confirmed or failed) before it returns or throws the first failure.
    @discardableResult
    public func publish<Event: AMQPEvent>(
        _ events: [Event], to exchange: String, correlationID: String? = nil, mandatory: Bool = true,
        envelope: EventEnvelope? = nil
    ) async throws(EventError) -> [EventMetadata] {
        let channel = try await publishing.get()
        try await ensureExchange(exchange, on: channel)
        let outgoing = try envelopes(events, correlationID: correlationID, messageID: nil, headers: [:], envelope: envelope)
        try await publishEvents(outgoing, exchange: exchange, routingKey: Event.eventType, mandatory: mandatory)
        return outgoing.map(\.metadata)
    }

    /// Publishes an event encoded already (say, by an outbox) with its envelope as it is: the same
    /// message id every time it is published. Returns once the broker has confirmed it.
    public func publish(
        encoded body: [UInt8], metadata: EventMetadata, to exchange: String, routingKey: String? = nil,
        mandatory: Bool = true, envelope: EventEnvelope? = nil
    ) async throws(EventError) {
        let channel = try await publishing.get()
        try await ensureExchange(exchange, on: channel)
        let outgoing = try message(metadata: metadata, payload: body, envelope: envelope ?? configuration.envelope)
        try await publishEvents([outgoing], exchange: exchange, routingKey: routingKey ?? metadata.type, mandatory: mandatory)
    }

    /// Sends `event` to a work queue, where competing consumers share it. A queue its consumers
    /// declared is used as it is (quorum, with delay queues, …); a missing one is declared durable
    /// with its parking lot. Returns once the broker has confirmed it.
    @discardableResult
    public func send<Event: AMQPEvent>(
        _ event: Event, toQueue queue: String, correlationID: String? = nil, messageID: String? = nil,
        headers: AMQPFieldTable = [:], envelope: EventEnvelope? = nil
    ) async throws(EventError) -> EventMetadata {
        let channel = try await publishing.get()
        try await ensureQueueExists(queue, on: channel)
        let outgoing = try envelopes([event], correlationID: correlationID, messageID: messageID, headers: headers, envelope: envelope)
        try await publishEvents(outgoing, exchange: "", routingKey: queue, mandatory: true)
        return outgoing[0].metadata
    }

    /// Sends a batch of events to a work queue, waiting for all the confirms at once.
    @discardableResult
    public func send<Event: AMQPEvent>(
        _ events: [Event], toQueue queue: String, correlationID: String? = nil, envelope: EventEnvelope? = nil
    ) async throws(EventError) -> [EventMetadata] {
        let channel = try await publishing.get()
        try await ensureQueueExists(queue, on: channel)
        let outgoing = try envelopes(events, correlationID: correlationID, messageID: nil, headers: [:], envelope: envelope)
        try await publishEvents(outgoing, exchange: "", routingKey: queue, mandatory: true)
        return outgoing.map(\.metadata)
    }

    // MARK: Envelopes

    struct Outgoing: Sendable {
        var metadata: EventMetadata
        var properties: AMQPProperties
        /// What goes on the wire: the payload, or a structured CloudEvent around it.
        var body: [UInt8]
        /// The encoded event.
        var payload: [UInt8]
        var envelope: EventEnvelope
    }

    /// The message of an encoded event in `envelope`.
    func message(metadata: EventMetadata, payload: [UInt8], envelope: EventEnvelope) throws(EventError) -> Outgoing {
        let (properties, body) = try envelope.message(
            metadata: metadata, body: payload, contentType: configuration.coder.contentType, source: configuration.cloudEventsSource)
        return Outgoing(metadata: metadata, properties: properties, body: body, payload: payload, envelope: envelope)
    }

    /// The events' bodies and envelopes; inside a handler, they inherit its correlation and
    /// causation. What all share (the headers, the time) is made once.
    func envelopes<Event: AMQPEvent>(
        _ events: [Event], correlationID: String?, messageID: String?, headers: AMQPFieldTable, envelope: EventEnvelope? = nil
    ) throws(EventError) -> [Outgoing] {
        let envelope = envelope ?? configuration.envelope
        let handling = EventContext.current
        let template = EventMetadata(
            type: Event.eventType, messageID: "", timestamp: Date(), correlationID: nil,
            causationID: handling?.metadata.messageID, schemaVersion: Event.schemaVersion,
            appID: configuration.appID, headers: headers)
        let templateProperties = template.properties(contentType: configuration.coder.contentType)
        let inheritedCorrelation = correlationID ?? handling?.metadata.correlationID
        var outgoing: [Outgoing] = []
        outgoing.reserveCapacity(events.count)
        for event in events {
            let body: [UInt8]
            do {
                body = try configuration.coder.encode(event)
            } catch {
                throw EventError(code: .encodingFailed, message: "could not encode \(Event.eventType): \(error)")
            }
            let id = messageID ?? messageIDs.next()
            var metadata = template
            metadata.messageID = id
            metadata.correlationID = inheritedCorrelation ?? id
            guard envelope == .amqp else {
                outgoing.append(try message(metadata: metadata, payload: body, envelope: envelope))
                continue
            }
            var properties = templateProperties
            properties.messageID = id
            properties.correlationID = metadata.correlationID
            outgoing.append(Outgoing(metadata: metadata, properties: properties, body: body, payload: body, envelope: .amqp))
        }
        return outgoing
    }

    /// Publishes every message, then waits for every confirm. Messages whose outcome the
    /// connection's loss made unknown are published again (same message id), up to
    /// ``Configuration/publishAttempts`` times.
    func publishAllConfirmed(
        _ messages: [Outgoing], exchange: String, routingKey: String, mandatory: Bool
    ) async throws(EventError) {
        var pending = messages
        var attempt = 0
        var firstFailure: EventError?
        var confirmations: [Result<AMQPPublishConfirmation, AMQPError>] = []
        while !pending.isEmpty {
            attempt += 1
            let channel = try await publishing.get()
            confirmations.removeAll(keepingCapacity: true)
            for message in pending {
                do {
                    confirmations.append(
                        .success(
                            try await channel.publish(
                                message.body, exchange: exchange, routingKey: routingKey, mandatory: mandatory,
                                properties: message.properties)))
                } catch {
                    confirmations.append(.failure(error))
                }
            }
            var unknown: [Outgoing] = []
            for index in confirmations.indices {
                do {
                    try await confirmations[index].get().confirmed()
                } catch {
                    if Self.outcomeUnknown(error) && attempt < configuration.publishAttempts {
                        unknown.append(pending[index])
                    } else if firstFailure == nil {
                        firstFailure = Self.publishFailure(error, pending[index].metadata, exchange: exchange)
                    }
                }
            }
            pending = unknown
            if !unknown.isEmpty {
                logger.debug(
                    "publishing events again after the connection failed before the broker confirmed them",
                    metadata: [LoggingKeys.count: "\(unknown.count)", LoggingKeys.attempt: "\(attempt + 1)"])
            }
        }
        if let firstFailure { throw firstFailure }
    }

    /// The connection failed before the broker said: publishing again is safe (same message id).
    static func outcomeUnknown(_ error: AMQPError) -> Bool {
        [.outcomeUnknown, .connectionLost].contains(error.code)
    }

    static func publishFailure(_ error: AMQPError, _ metadata: EventMetadata, exchange: String) -> EventError {
        let why =
            switch error.code {
            case .messageReturned: "no queue is bound for it (is any service subscribed?)"
            case .publishNacked: "the broker refused it"
            default: error.message
            }
        let destination = exchange.isEmpty ? "the default exchange" : "exchange \(exchange)"
        return EventError(
            code: .publishFailed, message: "\(metadata.type) \(metadata.messageID) to \(destination): \(why)",
            underlying: error)
    }
}
