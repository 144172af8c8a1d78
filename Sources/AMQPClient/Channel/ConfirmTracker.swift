import Synchronization

/// One publish waiting for its `basic.ack` or `basic.nack`, shared by the publishing task
/// and the I/O thread.
final class ConfirmTracker: Sendable {
    private struct State {
        var outcome: Result<Void, AMQPError>?
        var waiters: [CancellableContinuation<Void>] = []
        /// Set by a `basic.return`; the ack that follows then reports this error.
        var returned: AMQPError?
    }

    private let state = Mutex(State())
    /// Gets back the place this publish took once it has an outcome.
    private let limiter: UnconfirmedPublishLimiter?
    /// Records the time from publish to outcome, when metrics are on.
    private let timing: (metrics: MessagingMetrics, start: ContinuousClock.Instant)?

    init(limiter: UnconfirmedPublishLimiter? = nil, metrics: MessagingMetrics? = nil) {
        self.limiter = limiter
        self.timing = metrics.map { ($0, .now) }
    }

    /// The broker's ack (or nack) arrived.
    func resolve(acked: Bool) {
        complete { returned in
            if let returned { return .failure(returned) }
            return acked
                ? .success(())
                : .failure(AMQPError(code: .publishNacked, message: "the broker refused the message (basic.nack)"))
        }
    }

    func fail(_ error: AMQPError) {
        complete { _ in .failure(error) }
    }

    func markReturned(_ error: AMQPError) {
        state.withLock { $0.returned = error }
    }

    private func complete(_ outcome: (AMQPError?) -> Result<Void, AMQPError>) {
        let (waiters, result) = state.withLock { state -> ([CancellableContinuation<Void>], Result<Void, AMQPError>?) in
            guard state.outcome == nil else { return ([], nil) }
            let result = outcome(state.returned)
            state.outcome = result
            defer { state.waiters.removeAll() }
            return (state.waiters, result)
        }
        guard let result else { return }
        limiter?.release()
        if let timing {
            let error: AMQPError? = if case .failure(let error) = result { error } else { nil }
            timing.metrics.recordPublish(timing.start.duration(to: .now), error: error)
        }
        for waiter in waiters { waiter.resume(with: result.mapError { $0 as any Error }) }
    }

    func wait() async throws(AMQPError) {
        if let outcome = state.withLock({ $0.outcome }) { return try outcome.get() }
        try await withCancellableContinuation { (continuation: CancellableContinuation<Void>) in
            let outcome = state.withLock { state -> Result<Void, AMQPError>? in
                if let outcome = state.outcome { return outcome }
                state.waiters.append(continuation)
                return nil
            }
            if let outcome { continuation.resume(with: outcome.mapError { $0 as any Error }) }
        }
    }
}
