import DequeModule
import Synchronization

/// The buffer between the I/O thread, which pushes deliveries, and the task that
/// iterates an ``AMQPConsumer``.
///
/// Its size is bounded by the channel's prefetch (the broker sends no more
/// unacknowledged messages than that). When the iterating side stops, the
/// deliveries still buffered are handed back so they can be requeued rather than
/// left unacknowledged.
final class ConsumerStream: Sendable {
    enum PushResult {
        case accepted
        /// Accepted, and the iterating task waits for it: call ``wake()`` once the current batch
        /// of frames is handled, so one wake-up hands over many deliveries.
        case acceptedNeedsWake
        /// Iteration has ended: the delivery was not taken.
        case refused
    }

    private struct State {
        var buffer: Deque<AMQPDelivery> = []
        var waiter: CheckedContinuation<AMQPDelivery?, any Error>?
        /// Set when the producing side is done: `nil` error means a normal end.
        var finished: Result<Void, AMQPError>?
        /// Set when the iterating side stopped (iteration ended or its task was cancelled).
        var terminated = false
        /// A push found the waiter and asked the I/O thread for a ``wake()``.
        var wakeRequested = false
        /// The queue consumed from; recovery may rename a server-named queue.
        var queue: String
    }

    let consumerTag: String
    let noAck: Bool
    private let state: Mutex<State>
    /// Runs once when the iterating side stops (loop ended, task cancelled, consumer released),
    /// with the deliveries it never handed out: cancels the consumer on the broker, requeues them.
    private let onStop: @Sendable (ConsumerStream, [AMQPDelivery]) -> Void

    init(
        consumerTag: String, queue: String, noAck: Bool,
        onStop: @escaping @Sendable (ConsumerStream, [AMQPDelivery]) -> Void
    ) {
        self.consumerTag = consumerTag
        self.noAck = noAck
        self.state = Mutex(State(queue: queue))
        self.onStop = onStop
    }

    var queue: String {
        get { state.withLock { $0.queue } }
        set { state.withLock { $0.queue = newValue } }
    }

    // MARK: I/O thread side

    func push(_ delivery: AMQPDelivery) -> PushResult {
        state.withLock { state in
            if state.terminated || state.finished != nil { return .refused }
            state.buffer.append(delivery)
            guard state.waiter != nil, !state.wakeRequested else { return .accepted }
            state.wakeRequested = true
            return .acceptedNeedsWake
        }
    }

    /// Hands the oldest buffered delivery to the waiting iterator.
    func wake() {
        let handOver = state.withLock { state -> (CheckedContinuation<AMQPDelivery?, any Error>, AMQPDelivery)? in
            state.wakeRequested = false
            guard let waiter = state.waiter, let delivery = state.buffer.popFirst() else { return nil }
            state.waiter = nil
            return (waiter, delivery)
        }
        if let (waiter, delivery) = handOver { waiter.resume(returning: delivery) }
    }

    /// Ends the sequence once the buffered deliveries have been taken: normally, or with `error`.
    func finish(_ error: AMQPError?) {
        enum Wake { case none, delivery(AMQPDelivery), end }
        let (waiter, wake) = state.withLock { state -> (CheckedContinuation<AMQPDelivery?, any Error>?, Wake) in
            guard state.finished == nil else { return (nil, .none) }
            state.finished = error.map { .failure($0) } ?? .success(())
            guard let waiter = state.waiter else { return (nil, .none) }
            state.waiter = nil
            // A wake may still be pending: buffered deliveries come before the end.
            if let delivery = state.buffer.popFirst() { return (waiter, .delivery(delivery)) }
            return (waiter, .end)
        }
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

    /// What the iterating side gets now, without waiting.
    private static func take(_ state: inout State) -> Take {
        if let delivery = state.buffer.popFirst() { return .delivery(delivery) }
        if state.terminated { return .end }
        switch state.finished {
        case .success: return .end
        case .failure(let error): return .failure(error)
        case nil: return .empty
        }
    }

    func next() async throws -> AMQPDelivery? {
        // Fast path: a buffered delivery needs no continuation.
        switch state.withLock({ Self.take(&$0) }) {
        case .delivery(let delivery): return delivery
        case .end: return nil
        case .failure(let error): throw error
        case .empty: break
        }

        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AMQPDelivery?, any Error>) in
                let taken = state.withLock { state -> Take in
                    let taken = Self.take(&state)
                    if case .empty = taken { state.waiter = continuation }
                    return taken
                }
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
        let (buffered, waiter) = state.withLock { state -> ([AMQPDelivery]?, CheckedContinuation<AMQPDelivery?, any Error>?) in
            guard !state.terminated else { return (nil, nil) }
            state.terminated = true
            let buffered = Array(state.buffer)
            state.buffer.removeAll()
            defer { state.waiter = nil }
            return (buffered, state.waiter)
        }
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
        state.withLock { $0.buffer.removeAll() }
    }
}
