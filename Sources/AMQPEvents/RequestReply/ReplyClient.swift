import AMQPClient
import Synchronization

/// The requesting side of request/reply: one channel that consumes `amq.rabbitmq.reply-to` (in
/// no-ack mode, before the first request, as direct reply-to requires) and publishes the requests,
/// and a table of the requests waiting for their reply, by correlation id. Many requests may be
/// in flight at once.
///
/// Per request it costs one publish and one hand-over of the reply: the replies are read by a task
/// on the connection's I/O thread (it only looks up and resumes the waiter), timeouts are checked
/// by one sweeper for all requests, and whether a responder's queue exists is checked once per
/// queue (passively) instead of with a publisher confirm per request.
final class ReplyClient: Sendable {
    static let replyTo = "amq.rabbitmq.reply-to"
    /// How often waiting requests are checked for their deadline.
    static let sweepInterval = Duration.milliseconds(25)

    private enum Waiter {
        /// Published; its reply has not come.
        case waiting(deadline: ContinuousClock.Instant, CheckedContinuation<AMQPDelivery, any Error>?)
        /// The reply came before the requester started waiting for it.
        case replied(AMQPDelivery)
        case failed(any Error)
    }

    private struct State {
        var waiters: [String: Waiter] = [:]
        var sweeping = false
        /// Queues a passive declare found.
        var knownQueues: Set<String> = []
    }

    let connection: AMQPConnection
    let channel: AMQPChannel
    private let state = Mutex(State())

    private init(connection: AMQPConnection, channel: AMQPChannel) {
        self.connection = connection
        self.channel = channel
    }

    static func open(on connection: AMQPConnection) async throws(AMQPError) -> ReplyClient {
        let channel = try await connection.openChannel()
        do {
            let consumer = try await channel.consume(queue: replyTo, noAck: true)
            let client = ReplyClient(connection: connection, channel: channel)
            // On the I/O thread: a reply goes straight from the socket to its waiting request.
            Task(executorPreference: connection.taskExecutor) { [weak client] in
                do {
                    for try await reply in consumer {
                        guard let client else { return }
                        client.deliver(reply)
                    }
                    client?.failAll(AMQPError(code: .channelClosed, message: "the reply channel closed"))
                } catch {
                    client?.failAll(AMQPError.wrapping(error))
                }
            }
            return client
        } catch {
            await channel.close()
            throw error
        }
    }

    /// Publishes a request with `correlationID` (by `publish`) and waits for its reply.
    func request(
        correlationID: String, to queue: String, timeout: Duration,
        publish: () async throws(AMQPError) -> Void
    ) async throws -> AMQPDelivery {
        try await checkResponderQueue(queue)
        let deadline = ContinuousClock.now + timeout
        let startSweeper = state.withLock { state -> Bool in
            state.waiters[correlationID] = .waiting(deadline: deadline, nil)
            defer { state.sweeping = true }
            return !state.sweeping
        }
        if startSweeper { Task { await self.sweep() } }
        do {
            try await publish()
        } catch {
            state.withLock { _ = $0.waiters.removeValue(forKey: correlationID) }
            throw EventError(code: .publishFailed, message: "the request was not published: \(error.message)", underlying: error)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AMQPDelivery, any Error>) in
                let ready = state.withLock { state -> Result<AMQPDelivery, any Error>? in
                    switch state.waiters[correlationID] {
                    case .waiting(let deadline, _):
                        state.waiters[correlationID] = .waiting(deadline: deadline, continuation)
                        return nil
                    case .replied(let reply):
                        state.waiters[correlationID] = nil
                        return .success(reply)
                    case .failed(let error):
                        state.waiters[correlationID] = nil
                        return .failure(error)
                    case nil:
                        return .failure(CancellationError())
                    }
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            fail(correlationID, CancellationError())
        }
    }

    /// Once per queue: a request to a queue nobody declared would be dropped by the broker.
    private func checkResponderQueue(_ queue: String) async throws(EventError) {
        guard !state.withLock({ $0.knownQueues.contains(queue) }) else { return }
        guard try await connection.queueExists(queue) else {
            throw EventError(code: .noResponder, message: "no queue \(queue) takes requests: is its responder declared?")
        }
        state.withLock { _ = $0.knownQueues.insert(queue) }
    }

    private func deliver(_ reply: AMQPDelivery) {
        guard let id = reply.properties.correlationID else { return }
        let continuation = state.withLock { state -> CheckedContinuation<AMQPDelivery, any Error>? in
            guard case .waiting(_, let continuation) = state.waiters[id] else { return nil }  // late or not ours
            if continuation == nil {
                state.waiters[id] = .replied(reply)
            } else {
                state.waiters[id] = nil
            }
            return continuation
        }
        continuation?.resume(returning: reply)
    }

    private func fail(_ correlationID: String, _ error: any Error) {
        let continuation = state.withLock { state -> CheckedContinuation<AMQPDelivery, any Error>? in
            guard case .waiting(_, let continuation) = state.waiters[correlationID] else { return nil }
            state.waiters[correlationID] = continuation == nil ? .failed(error) : nil
            return continuation
        }
        continuation?.resume(throwing: error)
    }

    /// Fails the requests past their deadline; runs while any request waits.
    private func sweep() async {
        while true {
            try? await Task.sleep(for: Self.sweepInterval)
            let now = ContinuousClock.now
            let (expired, done) = state.withLock { state -> ([String], Bool) in
                var expired: [String] = []
                for (id, waiter) in state.waiters {
                    if case .waiting(let deadline, _) = waiter, deadline <= now { expired.append(id) }
                }
                if state.waiters.isEmpty { state.sweeping = false }
                return (expired, state.waiters.isEmpty)
            }
            for id in expired {
                // A queue that takes requests nobody answers may have lost its responder for good.
                fail(id, EventError(code: .timedOut, message: "no reply in time (is the responder running?)"))
            }
            if done { return }
        }
    }

    private func failAll(_ error: AMQPError) {
        let ids = state.withLock { Array($0.waiters.keys) }
        for id in ids { fail(id, EventError.broker("waiting for a reply", error)) }
    }
}
