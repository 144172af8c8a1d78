import AMQPClient
import Synchronization

/// The requesting side of request/reply: one channel that consumes `amq.rabbitmq.reply-to` (in
/// no-ack mode, before the first request, as direct reply-to requires) and publishes the requests,
/// and a table of the requests waiting for their reply, by correlation id. Many requests may be
/// in flight at once.
///
/// Per request it costs one publish and one hand-over of the reply: the replies are read on the
/// connection's I/O thread (the reader only looks up and resumes the waiter), timeouts are checked
/// by one sweeper for all requests, and whether a responder's queue exists is checked once per
/// queue (passively) instead of with a publisher confirm per request.
///
/// The reader and the sweeper are child tasks of one task the client owns: ``close()`` and
/// releasing the client cancel it, which cancels the reply consumer on the broker and fails the
/// requests still waiting.
final class ReplyClient: Sendable {
    static let replyTo = "amq.rabbitmq.reply-to"
    /// How often waiting requests are checked for their deadline.
    static let sweepInterval = Duration.milliseconds(25)

    let connection: AMQPConnection
    let channel: AMQPChannel
    private let waiters: ReplyWaiters
    /// Runs ``serve(_:into:readingOn:)``; cancelled by ``close()`` and `deinit`.
    let serving: Task<Void, Never>
    /// Queues a passive declare found.
    private let knownQueues = Mutex<Set<String>>([])

    private init(connection: AMQPConnection, channel: AMQPChannel, consumer: AMQPConsumer) {
        self.connection = connection
        self.channel = channel
        let waiters = ReplyWaiters()
        self.waiters = waiters
        // Holds the consumer and the table, not the client, so releasing the client cancels it.
        // Detached: it lives as long as the client and must not keep the task-local values (trace
        // context, EventContext.current) of the request that happened to open it.
        serving = Task.detached { await Self.serve(consumer, into: waiters, readingOn: connection.taskExecutor) }
    }

    deinit {
        serving.cancel()
    }

    static func open(on connection: AMQPConnection) async throws(AMQPError) -> ReplyClient {
        let channel = try await connection.openChannel()
        do {
            let consumer = try await channel.consume(queue: replyTo, noAck: true)
            return ReplyClient(connection: connection, channel: channel, consumer: consumer)
        } catch {
            await channel.close()
            throw error
        }
    }

    /// Whether requests can still be made: the channel is open and replies are read.
    var isUsable: Bool { channel.isOpen && !waiters.isClosed }

    /// Stops reading replies (the requests waiting fail with ``EventError/Code/closed``), cancels
    /// the reply consumer and closes the channel.
    func close() async {
        serving.cancel()
        await serving.value
        await channel.close()
    }

    /// Reads `replies` and hands each to its waiting request (on `executor`, the connection's I/O
    /// thread: a reply goes straight from the socket to its request), and sweeps the deadlines,
    /// until `replies` ends or the task is cancelled; then fails whatever still waits.
    static func serve(
        _ replies: some AsyncSequence<AMQPDelivery, any Error> & Sendable, into waiters: ReplyWaiters,
        readingOn executor: (any TaskExecutor)?
    ) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask(executorPreference: executor) {
                do {
                    for try await reply in replies { waiters.deliver(reply) }
                    // Cancelled (closed or released), or the channel or connection closed.
                    waiters.close(
                        Task.isCancelled
                            ? EventError.busClosed
                            : EventError.broker(
                                "waiting for a reply", AMQPError(code: .channelClosed, message: "the reply channel closed")))
                } catch {
                    waiters.close(EventError.broker("waiting for a reply", AMQPError.wrap(error)))
                }
            }
            group.addTask { await waiters.sweep(every: sweepInterval) }
            // The reader ends first: the sweeper runs until it is cancelled.
            await group.next()
            group.cancelAll()
        }
    }

    /// Publishes a request with `correlationID` (by `publish`) and waits for its reply.
    func request(
        correlationID: String, to queue: String, timeout: Duration,
        publish: () async throws(EventError) -> Void
    ) async throws -> AMQPDelivery {
        try await checkResponderQueue(queue)
        try waiters.register(correlationID, deadline: .now + timeout)
        do {
            try await publish()
        } catch {
            waiters.remove(correlationID)
            throw error
        }
        return try await waiters.wait(for: correlationID)
    }

    /// Once per queue: a request to a queue nobody declared would be dropped by the broker.
    private func checkResponderQueue(_ queue: String) async throws(EventError) {
        guard !knownQueues.withLock({ $0.contains(queue) }) else { return }
        guard try await connection.queueExists(queue) else {
            throw EventError(code: .noResponder, message: "no queue \(queue) takes requests: is its responder declared?")
        }
        knownQueues.withLock { _ = $0.insert(queue) }
    }
}

/// The requests waiting for their reply, by correlation id, and the sweeper that fails those past
/// their deadline.
final class ReplyWaiters: Sendable {
    private enum Waiter {
        /// Published; its reply has not come.
        case waiting(deadline: ContinuousClock.Instant, CheckedContinuation<AMQPDelivery, any Error>?)
        /// The reply came before the requester started waiting for it.
        case replied(AMQPDelivery)
        case failed(any Error)
    }

    private struct State {
        var waiters: [String: Waiter] = [:]
        /// The sweeper was woken for the current waiters and sweeps until there are none.
        var sweeping = false
        /// Set once replies are no longer read: new requests fail with it.
        var closed: EventError?
    }

    private let state = Mutex(State())
    /// Wakes the idle sweeper when a first request starts waiting.
    private let wakeups: AsyncStream<Void>
    private let wakeup: AsyncStream<Void>.Continuation

    init() {
        (wakeups, wakeup) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    var isClosed: Bool { state.withLock { $0.closed != nil } }

    /// Records a request about to be published, so that a reply faster than the requester finds it.
    func register(_ correlationID: String, deadline: ContinuousClock.Instant) throws(EventError) {
        let wake = try state.withLock { state throws(EventError) -> Bool in
            if let closed = state.closed { throw closed }
            state.waiters[correlationID] = .waiting(deadline: deadline, nil)
            defer { state.sweeping = true }
            return !state.sweeping
        }
        if wake { wakeup.yield() }
    }

    func remove(_ correlationID: String) {
        state.withLock { _ = $0.waiters.removeValue(forKey: correlationID) }
    }

    /// Waits for the reply to a registered request (or its failure: deadline, close, cancellation).
    func wait(for correlationID: String) async throws -> AMQPDelivery {
        try await withTaskCancellationHandler {
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

    func deliver(_ reply: AMQPDelivery) {
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

    func fail(_ correlationID: String, _ error: any Error) {
        let continuation = state.withLock { state -> CheckedContinuation<AMQPDelivery, any Error>? in
            Self.fail(correlationID, error, in: &state)
        }
        continuation?.resume(throwing: error)
    }

    private static func fail(
        _ correlationID: String, _ error: any Error, in state: inout State
    ) -> CheckedContinuation<AMQPDelivery, any Error>? {
        guard case .waiting(_, let continuation) = state.waiters[correlationID] else { return nil }
        state.waiters[correlationID] = continuation == nil ? .failed(error) : nil
        return continuation
    }

    /// Replies are no longer read: fails the requests waiting and every later one with `error`,
    /// and ends the sweeper.
    func close(_ error: EventError) {
        let continuations = state.withLock { state -> [CheckedContinuation<AMQPDelivery, any Error>] in
            if state.closed == nil { state.closed = error }
            let ids = Array(state.waiters.keys)
            return ids.compactMap { Self.fail($0, error, in: &state) }
        }
        for continuation in continuations { continuation.resume(throwing: error) }
        wakeup.finish()
    }

    /// Fails the requests past their deadline, checking every `interval` while any request waits
    /// and idle otherwise; returns when cancelled or closed.
    func sweep(every interval: Duration) async {
        for await _ in wakeups {
            while true {
                do { try await Task.sleep(for: interval) } catch { return }
                let now = ContinuousClock.now
                let (expired, done) = state.withLock { state -> ([CheckedContinuation<AMQPDelivery, any Error>], Bool) in
                    let ids = state.waiters.compactMap { id, waiter in
                        if case .waiting(let deadline, _) = waiter, deadline <= now { id } else { nil }
                    }
                    let expired = ids.compactMap { Self.fail($0, Self.timedOut, in: &state) }
                    if state.waiters.isEmpty { state.sweeping = false }
                    return (expired, state.waiters.isEmpty)
                }
                for continuation in expired { continuation.resume(throwing: Self.timedOut) }
                if done { break }
            }
        }
    }

    // A queue that takes requests nobody answers may have lost its responder for good.
    private static let timedOut = EventError(code: .timedOut, message: "no reply in time (is the responder running?)")
}
