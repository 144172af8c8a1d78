import AMQPClient

extension EventBus {
    /// The events of one type as an `AsyncSequence`, for those who prefer a loop to handlers.
    /// Messages of other types, and bodies that do not decode, go to the parking lot.
    ///
    /// ```swift
    /// let orders = try await bus.events(OrderPlaced.self, from: .publishSubscribe(exchange: "orders", service: "audit"))
    /// for try await order in orders {
    ///     try await record(order.event)
    ///     try await order.ack()
    /// }
    /// ```
    public func events<Event: AMQPEvent>(
        _ type: Event.Type, from kind: EventSubscription.Kind, prefetch: UInt16 = 1
    ) async throws(EventError) -> EventStream<Event> {
        // A subscription with a handler of this type, so that the topology binds it.
        let subscription = EventSubscription(kind, concurrency: 1, prefetch: max(prefetch, 1)).on(Event.self) { _, _ in }
        try subscription.validate()
        let (channel, consumer) = try await openConsumer(prefetch: subscription.effectivePrefetch, "\(Event.eventType) events") {
            channel throws(EventError) in
            try await declareTopology(subscription, on: channel)
        }
        return EventStream(bus: self, channel: channel, consumer: consumer, parkingLot: subscription.parkingLot)
    }
}

/// Events of one type from a queue. Iterate it from one task; ``close()`` it when done. One that
/// is dropped (with every iterator of it) closes its channel too: its unacknowledged events go
/// back to the queue.
public struct EventStream<Event: AMQPEvent>: AsyncSequence, Sendable {
    public typealias Element = ReceivedEvent<Event>

    let bus: EventBus
    let consumer: AMQPConsumer
    let parkingLot: String?
    private let lifetime: ChannelLifetime
    var channel: AMQPChannel { lifetime.channel }

    init(bus: EventBus, channel: AMQPChannel, consumer: AMQPConsumer, parkingLot: String?) {
        self.bus = bus
        self.lifetime = ChannelLifetime(channel)
        self.consumer = consumer
        self.parkingLot = parkingLot
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: EventStream
        var deliveries: AMQPConsumer.AsyncIterator

        public mutating func next() async throws -> ReceivedEvent<Event>? {
            while let delivery = try await deliveries.next() {
                let queue = stream.consumer.queue
                let received: ReceivedEnvelope
                switch ReceivedEnvelope.read(delivery.properties, body: delivery.body) {
                case .success(let envelope) where envelope.metadata.type == Event.eventType:
                    received = envelope
                case .success(let envelope):
                    await stream.bus.park(
                        delivery, from: queue, in: stream.parkingLot, reason: .unknownEventType,
                        error: "expected \(Event.eventType), got \(envelope.metadata.type)")
                    continue
                case .failure(let why):
                    await stream.bus.park(delivery, from: queue, in: stream.parkingLot, reason: why.code, error: why.message)
                    continue
                }
                let metadata = received.metadata
                do {
                    let event = try EventHandler.decode(
                        Event.self, received.body, wrapped: received.payloadIsWrapped, stream.bus.configuration.coder)
                    let context = EventContext(delivery: delivery, metadata: metadata, queue: queue, bus: stream.bus)
                    return ReceivedEvent(event: event, context: context, delivery: delivery)
                } catch {
                    await stream.bus.park(delivery, from: queue, in: stream.parkingLot, reason: .decodingFailed, error: "\(error)")
                }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(stream: self, deliveries: consumer.makeAsyncIterator())
    }

    /// Stops consuming; events not yet acknowledged go back to the queue.
    public func close() async {
        await channel.close()
    }
}

/// An event taken from an ``EventStream``; acknowledge it once handled.
public struct ReceivedEvent<Event: AMQPEvent>: Sendable {
    /// The decoded event.
    public let event: Event
    /// Where and how it came in: envelope, queue, retry count, the bus.
    public let context: EventContext
    let delivery: AMQPDelivery

    /// The event's envelope (the context's).
    public var metadata: EventMetadata { context.metadata }

    /// The event was handled: the broker forgets it.
    public func ack() async throws(EventError) {
        do { try await delivery.ack() } catch { throw EventError.broker("acknowledging \(metadata.messageID)", error) }
    }

    /// The event could not be handled: back to its queue (`requeue: true`, for another try), or
    /// to the parking lot (`false`), with the same meaning as `AMQPDelivery.reject(requeue:)`.
    public func reject(requeue: Bool) async throws(EventError) {
        do {
            try await delivery.reject(requeue: requeue)
        } catch {
            throw EventError.broker("rejecting \(metadata.messageID)", error)
        }
    }

    /// Runs `body` as the handling of this event: in its processing span, and with ``EventContext/current``
    /// set, so that events published meanwhile carry its correlation and causation ids.
    public func handle<Result>(_ body: () async throws -> Result) async rethrows -> Result {
        try await delivery.withProcessingSpan { _ in
            try await EventContext.$current.withValue(context) { try await body() }
        }
    }
}

/// Closes a channel when the last value that uses it goes.
final class ChannelLifetime: Sendable {
    let channel: AMQPChannel

    init(_ channel: AMQPChannel) {
        self.channel = channel
    }

    deinit {
        channel.requestClose()
    }
}
