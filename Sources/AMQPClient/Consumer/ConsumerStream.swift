import DequeModule
import Synchronization

/// The buffer between the I/O thread, which pushes deliveries, and the task that
/// iterates an ``AMQPConsumer``.
///
/// Its size is bounded by the channel's prefetch (the broker sends no more unacknowledged
/// messages than that) and, for consumers without one (no-ack, or prefetch 0), by
/// ``AMQPConnection/Configuration/consumerBufferLimit``: past it the I/O thread stops reading
/// the socket, so TCP makes the broker wait, until the iterating task has taken half of it.
/// When the iterating side stops, the deliveries still buffered are handed back so they can be
/// requeued rather than left unacknowledged.
final class ConsumerStream: Sendable {
    enum PushResult: Equatable {
        case accepted
        /// Accepted, and the iterating task waits for it: call ``wakeIfDue(at:batching:batchLimit:)``
        /// once the current batch of frames is handled, so one wake-up hands over many deliveries.
        case acceptedNeedsWake
        /// Accepted, and the buffer is now over its limit: stop reading until ``onDrained`` runs.
        case acceptedOverLimit(needsWake: Bool)
        /// Iteration has ended: the delivery was not taken.
        case refused
    }

    /// What a buffered delivery counts against the limit: its body's buffer, its properties
    /// (headers included, as decoded), and a share for the rest.
    static func cost(_ delivery: AMQPDelivery) -> Int {
        delivery.body.capacity + delivery.propertiesFootprint + 256
    }

    private struct State {
        var buffer: Deque<AMQPDelivery> = []
        var waiter: CheckedContinuation<AMQPDelivery?, any Error>?
        /// Set when the producing side is done: `nil` error means a normal end.
        var finished: Result<Void, AMQPError>?
        /// Set when the iterating side stopped (iteration ended or its task was cancelled).
        var terminated = false
        /// A push found the waiter and asked the I/O thread for a ``wakeIfDue(at:batching:batchLimit:)``.
        var wakeRequested = false
        /// How many deliveries the last wake-up handed over, and when: many, not long before the
        /// next batch began, mean a steady stream, where a batch may be held back (see
        /// ``AMQPConnection/Configuration/DeliveryBatching``).
        var lastHandOff = 0
        var lastHandOffAt: ContinuousClock.Instant?
        /// Since when the current batch has been held back.
        var heldSince: ContinuousClock.Instant?
        /// The queue consumed from; recovery may rename a server-named queue.
        var queue: String
        /// What the buffered deliveries cost (see ``ConsumerStream/cost(_:)``).
        var bufferedBytes = 0
        /// The buffer went over its limit and the I/O thread stopped reading; set back once half
        /// of the limit is taken out.
        var overLimit = false

        /// Takes the oldest buffered delivery out. Returns whether that drained an over-limit
        /// buffer to half its limit (the I/O thread must then be told).
        mutating func popFirst(limit: Int) -> (AMQPDelivery, drained: Bool)? {
            guard let delivery = buffer.popFirst() else { return nil }
            bufferedBytes -= ConsumerStream.cost(delivery)
            guard overLimit, bufferedBytes <= limit / 2 else { return (delivery, false) }
            overLimit = false
            return (delivery, true)
        }

        /// Empties the buffer. Returns whether that drained an over-limit buffer.
        mutating func removeAllBuffered() -> Bool {
            buffer.removeAll()
            bufferedBytes = 0
            defer { overLimit = false }
            return overLimit
        }
    }

    let consumerTag: String
    let noAck: Bool
    /// A stream consumer's settings: the offset of the last delivery the application took (where a
    /// recovery resumes), and the filter values it accepts.
    let streamConsumer: StreamConsumerState?
    private let state: Mutex<State>
    /// Runs once when the iterating side stops (loop ended, task cancelled, consumer released),
    /// with the deliveries it never handed out: cancels the consumer on the broker, requeues them.
    private let onStop: @Sendable (ConsumerStream, [AMQPDelivery]) -> Void
    /// The most the buffered deliveries may cost before the I/O thread stops reading.
    private let bufferLimit: Int
    /// Runs when a buffer that was over its limit has drained to half of it: wakes the I/O thread.
    private let onDrained: @Sendable () -> Void

    init(
        consumerTag: String, queue: String, noAck: Bool, bufferLimit: Int = .max,
        streamConsumer: StreamConsumerState? = nil,
        onDrained: @escaping @Sendable () -> Void = {},
        onStop: @escaping @Sendable (ConsumerStream, [AMQPDelivery]) -> Void
    ) {
        self.consumerTag = consumerTag
        self.noAck = noAck
        self.streamConsumer = streamConsumer
        self.state = Mutex(State(queue: queue))
        self.bufferLimit = bufferLimit
        self.onDrained = onDrained
        self.onStop = onStop
    }

    var queue: String {
        get { state.withLock { $0.queue } }
        set { state.withLock { $0.queue = newValue } }
    }

    // MARK: I/O thread side

    func push(_ delivery: AMQPDelivery) -> PushResult {
        let limit = bufferLimit
        return state.withLock { state in
            if state.terminated || state.finished != nil { return .refused }
            state.buffer.append(delivery)
            state.bufferedBytes += Self.cost(delivery)
            let needsWake = state.waiter != nil && !state.wakeRequested
            if needsWake { state.wakeRequested = true }
            if !state.overLimit && state.bufferedBytes > limit {
                state.overLimit = true
                return .acceptedOverLimit(needsWake: needsWake)
            }
            return needsWake ? .acceptedNeedsWake : .accepted
        }
    }

    /// Whether the buffer is still over its limit (the I/O thread keeps not reading).
    var isOverLimit: Bool { state.withLock { $0.overLimit } }

    /// Whether the iterating task waits for a delivery.
    var hasWaiter: Bool { state.withLock { $0.waiter != nil } }

    /// How many deliveries wait for the application to take them.
    var bufferedCount: Int { state.withLock { $0.buffer.count } }

    /// What ``wakeIfDue(at:batching:batchLimit:)`` did.
    enum WakeOutcome: Equatable {
        /// The waiting iterator got the buffered deliveries, or nothing waits any more.
        case done
        /// The batch is held back until this instant, or until it has `batchLimit` deliveries.
        case held(until: ContinuousClock.Instant)
    }

    /// Hands the buffered deliveries to the waiting iterator, unless they are the start of a
    /// batch worth holding back (see ``AMQPConnection/Configuration/DeliveryBatching``): the
    /// last hand-off was large, this one is still under `batchLimit`, and it has waited less
    /// than the batching's delay. `now` is `nil` to hand over at once.
    func wakeIfDue(
        at now: ContinuousClock.Instant?, batching: AMQPConnection.Configuration.DeliveryBatching, batchLimit: Int
    ) -> WakeOutcome {
        let limit = bufferLimit
        enum Decision {
            case handOver(CheckedContinuation<AMQPDelivery?, any Error>, AMQPDelivery, drained: Bool)
            case hold(ContinuousClock.Instant)
            case nothing
        }
        let decision = state.withLock { state -> Decision in
            guard state.waiter != nil, !state.buffer.isEmpty else {
                state.wakeRequested = false
                state.heldSince = nil
                return .nothing
            }
            if let now, batchLimit > batching.flowingBatch, state.lastHandOff >= batching.flowingBatch,
                state.buffer.count < batchLimit
            {
                if state.heldSince == nil, let lastHandOffAt = state.lastHandOffAt,
                    now - lastHandOffAt <= batching.pause
                {
                    // More came soon after the last batch: the stream flows. (After a pause, the
                    // first delivery goes at once, however large the batch before it was.)
                    state.heldSince = now
                }
                if let since = state.heldSince, now < since + batching.maximumDelay {
                    return .hold(since + batching.maximumDelay)
                }
            }
            state.wakeRequested = false
            state.heldSince = nil
            state.lastHandOff = state.buffer.count
            state.lastHandOffAt = now
            let (delivery, drained) = state.popFirst(limit: limit)!
            defer { state.waiter = nil }
            return .handOver(state.waiter!, delivery, drained: drained)
        }
        switch decision {
        case .handOver(let waiter, let delivery, let drained):
            if drained { onDrained() }
            waiter.resume(returning: delivery)
            return .done
        case .hold(let deadline):
            return .held(until: deadline)
        case .nothing:
            return .done
        }
    }

    /// Ends the sequence once the buffered deliveries have been taken: normally, or with `error`.
    func finish(_ error: AMQPError?) {
        enum Wake { case none, delivery(AMQPDelivery), end }
        let limit = bufferLimit
        let (waiter, wake, drained) = state.withLock {
            state -> (CheckedContinuation<AMQPDelivery?, any Error>?, Wake, Bool) in
            guard state.finished == nil else { return (nil, .none, false) }
            state.finished = error.map { .failure($0) } ?? .success(())
            guard let waiter = state.waiter else { return (nil, .none, false) }
            state.waiter = nil
            // A wake may still be pending: buffered deliveries come before the end.
            if let (delivery, drained) = state.popFirst(limit: limit) { return (waiter, .delivery(delivery), drained) }
            return (waiter, .end, false)
        }
        if drained { onDrained() }
        switch wake {
        case .none: break
        case .delivery(let delivery): waiter?.resume(returning: delivery)
        case .end: if let error { waiter?.resume(throwing: error) } else { waiter?.resume(returning: nil) }
        }
    }

    // MARK: Iterating side

    private enum Take {
        case delivery(AMQPDelivery)
        case end
        case failure(AMQPError)
        /// Nothing yet: the caller waits.
        case empty
    }

    /// What the iterating side gets now, without waiting, and whether taking it drained an
    /// over-limit buffer.
    private static func take(_ state: inout State, limit: Int) -> (Take, drained: Bool) {
        if let (delivery, drained) = state.popFirst(limit: limit) { return (.delivery(delivery), drained) }
        if state.terminated { return (.end, false) }
        switch state.finished {
        case .success: return (.end, false)
        case .failure(let error): return (.failure(error), false)
        case nil: return (.empty, false)
        }
    }

    /// Runs on the caller's executor (`nonisolated(nonsending)`): taking a buffered delivery
    /// needs no executor switch.
    nonisolated(nonsending) func next() async throws -> AMQPDelivery? {
        let limit = bufferLimit
        // Fast path: a buffered delivery needs no continuation.
        let (taken, drained) = state.withLock { Self.take(&$0, limit: limit) }
        if drained { onDrained() }
        switch taken {
        case .delivery(let delivery): return delivery
        case .end: return nil
        case .failure(let error): throw error
        case .empty: break
        }

        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AMQPDelivery?, any Error>) in
                let (taken, drained) = state.withLock { state -> (Take, drained: Bool) in
                    let taken = Self.take(&state, limit: limit)
                    if case .empty = taken.0 { state.waiter = continuation }
                    return taken
                }
                if drained { onDrained() }
                switch taken {
                case .empty: break
                case .delivery(let delivery): continuation.resume(returning: delivery)
                case .end: continuation.resume(returning: nil)
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            _ = terminate()
        }
    }

    /// Stops the iterating side. Returns the deliveries that were buffered but never handed
    /// out, or `nil` when the stream had already been terminated.
    func terminate() -> [AMQPDelivery]? {
        let (buffered, waiter, drained) = state.withLock {
            state -> ([AMQPDelivery]?, CheckedContinuation<AMQPDelivery?, any Error>?, Bool) in
            guard !state.terminated else { return (nil, nil, false) }
            state.terminated = true
            let buffered = Array(state.buffer)
            let drained = state.removeAllBuffered()
            defer { state.waiter = nil }
            return (buffered, state.waiter, drained)
        }
        if drained { onDrained() }
        waiter?.resume(returning: nil)
        if let buffered { onStop(self, buffered) }
        return buffered
    }

    var isFinished: Bool { state.withLock { $0.finished != nil } }

    /// The iterating side stopped; the consumer must not be restored by a recovery.
    var isTerminated: Bool { state.withLock { $0.terminated } }

    /// Drops the buffered deliveries the application has not seen: the connection was lost, so
    /// the broker redelivers them, and they could no longer be acknowledged.
    func discardBuffered() {
        if state.withLock({ $0.removeAllBuffered() }) { onDrained() }
    }
}

/// What a stream consumer keeps besides its buffer: the offset of the last delivery the
/// application took, for a recovery to resume after it, and the filter values it accepts.
final class StreamConsumerState: Sendable {
    /// RabbitMQ's stream filter is probabilistic: deliveries whose `x-stream-filter-value` is not
    /// one of these are settled and skipped. `nil`: no filter.
    let filter: Set<String>?
    private let lastTaken = Mutex<Int64?>(nil)

    init(filter: Set<String>?) {
        self.filter = filter
    }

    /// The offset of the last delivery the application took.
    var lastOffset: Int64? { lastTaken.withLock { $0 } }

    func took(_ delivery: AMQPDelivery) {
        guard let offset = delivery.streamOffset else { return }
        lastTaken.withLock { $0 = max($0 ?? offset, offset) }
    }

    /// Whether the application wants `delivery` (it passes the filter).
    func accepts(_ delivery: AMQPDelivery) -> Bool {
        guard let filter else { return true }
        guard case .string(let value) = delivery.properties.headers?["x-stream-filter-value"] else { return false }
        return filter.contains(value)
    }
}
