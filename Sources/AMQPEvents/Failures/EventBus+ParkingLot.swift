public import AMQPClient
public import Foundation

/// A message in a parking lot, and why it is there.
public struct ParkedMessage: Sendable {
    public var messageID: String?
    public var type: String?
    /// `decodingFailed`, `unknownEventType`, `retriesExhausted`, `nonRetryable`, or `nil` when the
    /// broker dead-lettered it without a reason (see its `x-death` header).
    public var reason: String?
    public var error: String?
    /// Handler calls it had.
    public var attempts: Int?
    /// How many times the broker dead-lettered it (its `x-death` header), when it did.
    public var deadLetterCount: Int?
    public var firstFailureAt: Date?
    public var parkedAt: Date?
    public var originalExchange: String?
    public var originalRoutingKey: String?
    public var body: [UInt8]
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
        messageID = delivery.properties.messageID
        type = delivery.properties.type
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
