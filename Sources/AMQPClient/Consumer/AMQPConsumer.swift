/// The deliveries of one `basic.consume`, as an `AsyncSequence`.
///
/// ```swift
/// let consumer = try await channel.consume(queue: "user_events")
/// for try await delivery in consumer {
///     handle(delivery.body)
///     try await delivery.ack()
/// }
/// ```
///
/// Ending the iteration (a `break`, a thrown error, or cancelling the task) cancels the
/// consumer on the broker and requeues the deliveries that were buffered but never handed
/// out. The sequence ends normally when the consumer is cancelled with ``cancel()`` or its
/// channel or connection is closed by the application, and throws when the broker cancels the
/// consumer (``AMQPError/Code/consumerCancelled``) or closes the channel or connection.
///
/// When the connection is lost and recovers (see ``AMQPConnection/Configuration/Recovery``),
/// the sequence does not end: the consumer is started again with the same tag and deliveries
/// continue. Messages that were delivered but not acknowledged before the loss come again
/// with ``AMQPDelivery/redelivered`` set, so handle messages idempotently.
///
/// A consumer is meant to be iterated by one task.
public final class AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    /// The tag that identifies this consumer on its channel.
    public let consumerTag: String
    /// The queue it consumes from. A server-named queue gets a new name when the connection
    /// recovers, and the consumer follows it.
    public var queue: String { stream.queue }

    let channel: AMQPChannel
    let stream: ConsumerStream

    init(channel: AMQPChannel, stream: ConsumerStream) {
        self.channel = channel
        self.stream = stream
        self.consumerTag = stream.consumerTag
    }

    deinit {
        channel.consumerStopped(stream)
    }

    /// Cancels the consumer on the broker and waits for the broker to confirm. Deliveries
    /// already buffered can still be iterated; then the sequence ends, whether the broker has
    /// confirmed yet or not (what it delivers meanwhile is requeued).
    public func cancel() async throws(AMQPError) {
        try await channel.cancelConsumer(stream)
    }

    /// Cancels the consumer on the broker without waiting: ``cancel()`` for code that cannot
    /// suspend, such as a graceful-shutdown handler, which would otherwise need a task of its own.
    /// The cancel is sent, deliveries already buffered can still be iterated, then the sequence
    /// ends; the broker's confirmation is not waited for, and what it delivers meanwhile is
    /// requeued.
    package func requestCancel() {
        if stream.isFinished { return }
        // No continuation: nobody waits for cancel-ok. A connection that refuses the command
        // (it is closing) ends the sequence here.
        channel.core.submitOrFail(.stopConsumer(channel.ref, stream, requeue: [], nil))
    }

    /// Stops taking deliveries now, without waiting, for a graceful shutdown that must start no
    /// new work: the consumer is cancelled on the broker, the sequence ends at once, and the
    /// deliveries buffered but not yet handed out go back to the queue (requeued). Those handed
    /// out already are still the application's to settle. A no-ack consumer's buffered
    /// deliveries cannot go back: it iterates them first, as after ``requestCancel()``.
    package func requestStop() {
        if stream.noAck {
            requestCancel()
        } else {
            _ = stream.terminate()  // its onStop cancels on the broker and requeues what was unseen
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol, Sendable {
        let stream: ConsumerStream
        /// Keeps the consumer alive while it is iterated, also when the sequence was a temporary
        /// (`for try await delivery in try await channel.consume(…)`).
        private let consumer: AMQPConsumer
        private let stopOnRelease: StopOnRelease

        init(consumer: AMQPConsumer) {
            self.stream = consumer.stream
            self.consumer = consumer
            self.stopOnRelease = StopOnRelease(channel: consumer.channel, stream: consumer.stream)
        }

        /// Called by `for try await`: runs on the iterating task's executor, with no switch.
        public mutating func next(isolation actor: isolated (any Actor)? = #isolation) async throws -> AMQPDelivery? {
            try await nextDelivery()
        }

        public mutating func next() async throws -> AMQPDelivery? {
            try await nextDelivery()
        }

        nonisolated(nonsending) private mutating func nextDelivery() async throws -> AMQPDelivery? {
            guard let streamConsumer = stream.streamConsumer else { return try await stream.next() }
            while let delivery = try await stream.next() {
                guard streamConsumer.accepts(delivery) else {
                    // Filtered out client-side: settled, so the broker's credit moves on.
                    try? await delivery.ack()
                    continue
                }
                streamConsumer.took(delivery)
                return delivery
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: self)
    }
}

/// Cancels the consumer when the last copy of an iterator goes away: iteration has ended.
private final class StopOnRelease: Sendable {
    let channel: AMQPChannel
    let stream: ConsumerStream

    init(channel: AMQPChannel, stream: ConsumerStream) {
        self.channel = channel
        self.stream = stream
    }

    deinit {
        channel.consumerStopped(stream)
    }
}
