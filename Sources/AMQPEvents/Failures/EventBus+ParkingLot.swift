public import AMQPClient
public import Foundation

/// A message in a parking lot, and why it is there.
public struct ParkedMessage: Sendable, CustomStringConvertible {
    /// The event's message id, the one deduplication and ``EventBus/replayParked(of:messageIDs:)`` use.
    public var messageID: String?
    /// The event type it was published as (the AMQP `type` property), if any.
    public var type: String?
    /// Its schema version (the `x-schema-version` header), if any.
    public var schemaVersion: Int?
    /// `decodingFailed`, `unknownEventType`, `retriesExhausted`, `nonRetryable`, or `nil` when the
    /// broker dead-lettered it without a reason (see its `x-death` header).
    public var reason: String?
    /// The error that parked it, as text (the `x-parked-error` header, at most 1000 characters),
    /// unescaped: print ``description`` rather than this.
    public var error: String?
    /// Handler calls it had.
    public var attempts: Int?
    /// How many times the broker dead-lettered it (its `x-death` header), when it did.
    public var deadLetterCount: Int?
    /// When its handler first failed (the `x-first-failure-at` header); `nil` when no handler call
    /// failed, as for a body that did not decode.
    public var firstFailureAt: Date?
    /// When it was parked (the `x-parked-at` header); `nil` when the broker dead-lettered it.
    public var parkedAt: Date?
    /// The exchange it was first published to (the `x-original-exchange` header), if known.
    public var originalExchange: String?
    /// The routing key it was first published with (the `x-original-routing-key` header), if known.
    public var originalRoutingKey: String?
    /// The message body, as published.
    public var body: [UInt8]
    /// The message's properties, with every header the retries and the parking added.
    public var properties: AMQPProperties

    init(_ delivery: AMQPDelivery) {
        let headers = delivery.properties.headers ?? [:]
        func text(_ key: String) -> String? {
            if case .string(let value) = headers[key] { return value }
            return nil
        }
        func time(_ key: String) -> Date? {
            if case .timestamp(let value) = headers[key] { return value }
            return nil
        }
        // A CloudEvent from another producer names itself in its envelope, not in AMQP properties.
        let envelope = try? ReceivedEnvelope.read(delivery.properties, body: delivery.body).get().metadata
        messageID = delivery.properties.messageID ?? envelope?.messageID
        type = delivery.properties.type ?? envelope?.type
        schemaVersion = headers[EnvelopeHeader.schemaVersion]?.integerValue ?? envelope?.schemaVersion
        reason = text(EnvelopeHeader.parkedReason)
        error = text(EnvelopeHeader.parkedError)
        attempts = headers[EnvelopeHeader.attempts]?.integerValue
        if case .array(let deaths) = headers[EnvelopeHeader.death] {
            deadLetterCount = deaths.reduce(0) { total, death in
                guard case .table(let table) = death else { return total }
                return total + (table["count"]?.integerValue ?? 0)
            }
        }
        firstFailureAt = time(EnvelopeHeader.firstFailureAt)
        parkedAt = time(EnvelopeHeader.parkedAt)
        originalExchange = text(EnvelopeHeader.originalExchange)
        originalRoutingKey = text(EnvelopeHeader.originalRoutingKey)
        body = delivery.body
        properties = delivery.properties
    }

    /// What the event was, in at most `limit` characters, fit for a terminal: the body as
    /// compact text when it is UTF-8 (JSON, say), escaped; otherwise its size.
    public func summary(limit: Int = 160) -> String {
        guard let text = String(validating: body, as: UTF8.self) else { return "<\(body.count) bytes>" }
        let compact = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
        return LogText.escaped(compact, limit: limit)
    }

    /// One line: id, type, reason, attempts, and the summary.
    public var description: String {
        var fields = [
            "id=\(LogText.escaped(messageID ?? "-", limit: 80))", "type=\(LogText.escaped(type ?? "-", limit: 80))",
            "reason=\(LogText.escaped(reason ?? "dead-lettered", limit: 40))",
        ]
        if let attempts { fields.append("attempts=\(attempts)") }
        if let error { fields.append("error=\(LogText.escaped(error, limit: 120))") }
        fields.append("event=\(summary())")
        return fields.joined(separator: " ")
    }
}

extension EventBus {
    /// The first `limit` messages in `queue`'s parking lot, left there.
    public func parkedMessages(of queue: String, limit: Int = 100) async throws(EventError) -> [ParkedMessage] {
        let parkingLot = EventTopology.parkingLot(of: queue)
        let channel = try await openChannel()
        do {
            var parked: [ParkedMessage] = []
            var last: AMQPDelivery?
            while parked.count < limit, let delivery = try await channel.get(from: parkingLot, noAck: false) {
                parked.append(ParkedMessage(delivery))
                last = delivery
            }
            // Put them all back in their places, and wait until the queue has them again: a
            // call on the same channel is answered after the queue handled the requeue, so a
            // replay that counts the parking lot next sees them (a close alone did not wait).
            if let last {
                try await last.nack(multiple: true, requeue: true)
                _ = try await channel.declareQueue(parkingLot, passive: true)
            }
            await channel.close()
            return parked
        } catch {
            await channel.close()
            throw EventError.broker("reading the parking lot \(parkingLot)", error)
        }
    }

    /// Moves parked messages back to `queue`, all of them or those whose message id is in
    /// `messageIDs`, with their retry count reset; returns how many moved. The others stay parked.
    @discardableResult
    public func replayParked(of queue: String, messageIDs: Set<String>? = nil) async throws(EventError) -> Int {
        let parkingLot = EventTopology.parkingLot(of: queue)
        let channel = try await openChannel()
        do {
            try await channel.enablePublisherConfirms()
            let waiting = try await channel.declareQueue(parkingLot, passive: true).messageCount
            var moved = 0
            for _ in 0..<waiting {
                guard let delivery = try await channel.get(from: parkingLot, noAck: false) else { break }
                let selected = messageIDs.map { ids in delivery.properties.messageID.map(ids.contains) ?? false } ?? true
                var properties = delivery.properties
                if selected {
                    properties.headers = Self.withoutFailureHeaders(properties.headers)
                    moved += 1
                }
                // Each goes somewhere before it leaves the parking lot: back to work, or to the lot's end.
                try await channel.publish(
                    delivery.body, exchange: "", routingKey: selected ? queue : parkingLot, mandatory: true,
                    properties: properties
                ).confirmed()
                try await delivery.ack()
            }
            await channel.close()
            logger.info("moved parked messages back", metadata: [LoggingKeys.queue: .untrusted(queue), LoggingKeys.count: "\(moved)"])
            return moved
        } catch {
            await channel.close()
            throw EventError.broker("replaying the parking lot \(parkingLot)", error)
        }
    }

    /// Deletes every message in `queue`'s parking lot; returns how many there were.
    @discardableResult
    public func purgeParked(of queue: String) async throws(EventError) -> Int {
        let parkingLot = EventTopology.parkingLot(of: queue)
        let channel = try await openChannel()
        do {
            let purged = try await channel.purgeQueue(parkingLot)
            await channel.close()
            logger.info("purged a parking lot", metadata: [LoggingKeys.queue: .untrusted(parkingLot), LoggingKeys.count: "\(purged)"])
            return Int(purged)
        } catch {
            await channel.close()
            throw EventError.broker("purging the parking lot \(parkingLot)", error)
        }
    }

    /// Deletes what ``declare(_:)`` declares for `subscription`, messages included: its queue,
    /// parking lot and delay queues (and with the queue, its bindings). The exchange stays: other
    /// services use it. For tests and resets; a subscription that runs again declares it all anew.
    public func deleteTopology(for subscription: EventSubscription) async throws(EventError) {
        guard let queue = subscription.queue else { return }  // a broadcast queue goes with its subscriber
        let channel = try await openChannel()
        let queues =
            [queue, EventTopology.parkingLot(of: queue)]
            + subscription.retryPolicy.delays.indices.map { EventTopology.retryQueue(of: queue, step: $0 + 1) }
        do {
            for name in queues { try await channel.deleteQueue(name) }
            await channel.close()
        } catch {
            await channel.close()
            throw EventError.broker("deleting the topology of \(queue)", error)
        }
        forgetDeclared(queue: queue)
        logger.info("deleted a subscription's topology", metadata: [LoggingKeys.queue: .untrusted(queue)])
    }

    static func withoutFailureHeaders(_ headers: AMQPFieldTable?) -> AMQPFieldTable? {
        guard var headers else { return nil }
        for key in [
            EnvelopeHeader.parkedReason, EnvelopeHeader.parkedError, EnvelopeHeader.parkedFromQueue, EnvelopeHeader.parkedAt,
            EnvelopeHeader.retryAttempt, EnvelopeHeader.attempts, EnvelopeHeader.firstFailureAt, EnvelopeHeader.lastFailureAt,
            EnvelopeHeader.lastError, EnvelopeHeader.originalExchange, EnvelopeHeader.originalRoutingKey, EnvelopeHeader.death,
            EnvelopeHeader.firstDeathExchange, EnvelopeHeader.firstDeathQueue, EnvelopeHeader.firstDeathReason,
            EnvelopeHeader.lastDeathExchange, EnvelopeHeader.lastDeathQueue, EnvelopeHeader.lastDeathReason,
        ] {
            headers[key] = nil
        }
        return headers.isEmpty ? nil : headers
    }
}
