public import AMQPClient
public import Logging
import Synchronization

/// Typed events over one `AMQPConnection`: publish/subscribe, work queues, transient broadcast
/// and request/reply, with lossless defaults.
///
/// ```swift
/// let bus = EventBus(connection: connection, configuration: .init(appID: "order-service"))
/// try await bus.publish(OrderPlaced(orderId: "123", userId: "456", amount: 100), to: "orders")
///
/// let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
///     .on(OrderPlaced.self) { order, context in
///         try await charge(order)
///     }
/// try await bus.run(payments)   // until cancelled or a graceful shutdown
/// ```
///
/// Publishing uses a channel of its own in confirm mode, persistent messages and `mandatory`, so a
/// publish returns once the broker has the event and throws when it was refused or unroutable.
/// Every subscription has a channel of its own; what it declares is recorded by the connection,
/// which declares it again when it recovers.
public final class EventBus: Sendable {
    /// How a bus publishes, encodes and handles events.
    public struct Configuration: Sendable {
        /// The `app_id` of the events this service emits.
        public var appID: String?
        /// Encodes and decodes events; JSON unless set.
        public var coder: any EventCoder
        /// How many times a publish is made when the connection is lost before the broker
        /// confirmed it (with the same message id: consumers deduplicate).
        public var publishAttempts: Int
        /// How long ``EventBus/request(_:to:timeout:)`` waits for a reply unless told.
        public var requestTimeout: Duration
        /// Runs around every handler call of every subscription, before the subscription's own
        /// (see ``EventMiddleware``).
        public var middleware: [any EventMiddleware]
        /// Runs around every publish, send and request of the bus, the first outermost (see
        /// ``PublishMiddleware``).
        public var publishMiddleware: [any PublishMiddleware]
        /// The envelope events are published in: ours (AMQP properties) unless set. Every
        /// subscription reads all of them (see ``EventEnvelope``).
        public var envelope: EventEnvelope
        /// The CloudEvents `source` of the events published in a CloudEvents envelope;
        /// `/<appID>` unless set.
        public var source: String?
        /// A subscription (or responder) at concurrency 1 runs its handler on the connection's
        /// I/O thread while every call takes at most this long (1 ms unless set): the thread
        /// that read an event then handles it, without waking another, which saves about a
        /// quarter of the CPU per event. A longer call moves the handler to the global executor,
        /// since it would hold up every channel of the connection; a long run of quick calls
        /// brings it back. `nil`: always on the global executor. Blocking calls (a synchronous
        /// driver, `sleep`) belong off it either way: set `nil` for a handler that makes them.
        public var quickHandlerLimit: Duration? = .milliseconds(1)

        /// Bus settings; every one left out keeps its default.
        public init(
            appID: String? = nil, coder: any EventCoder = JSONEventCoder(), publishAttempts: Int = 5,
            requestTimeout: Duration = .seconds(10), middleware: [any EventMiddleware] = [],
            publishMiddleware: [any PublishMiddleware] = [], envelope: EventEnvelope = .amqp, source: String? = nil
        ) {
            self.publishMiddleware = publishMiddleware
            self.envelope = envelope
            self.source = source
            self.appID = appID
            self.coder = coder
            self.publishAttempts = publishAttempts
            self.requestTimeout = requestTimeout
            self.middleware = middleware
        }
    }

    /// The connection the bus publishes and consumes on.
    public let connection: AMQPConnection
    /// The configuration the bus was created with.
    public let configuration: Configuration
    /// Where the bus and its subscriptions log.
    public let logger: Logger
    /// The channel events are published on, in confirm mode.
    let publishing: OpenedOnFirstUse<AMQPChannel>
    /// Exchanges and queues this bus declared already (the connection declares them again on recovery).
    private let declared = Mutex<Set<String>>([])
    /// Request/reply's channel, opened by the first request.
    let replies: OpenedOnFirstUse<ReplyClient>
    /// Message ids of the events it publishes.
    let messageIDs = MessageIDGenerator()

    /// A bus on `connection`. It opens its channels on first use; the connection stays the
    /// application's to close.
    public init(
        connection: AMQPConnection, configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "amqp-events")
    ) {
        self.connection = connection
        self.configuration = configuration
        self.logger = logger
        self.publishing = OpenedOnFirstUse("the publishing channel", on: connection) {
            let channel = try await connection.openChannel()
            do {
                try await channel.enablePublisherConfirms()
            } catch {
                await channel.close()
                throw error
            }
            return channel
        } isUsable: { $0.isOpen } close: { await $0.close() }
        self.replies = OpenedOnFirstUse("the reply channel", on: connection) {
            try await ReplyClient.open(on: connection)
        } isUsable: { $0.isUsable } close: { await $0.close() }
    }

    /// Closes the channels the bus opened for itself: the publishing channel and request/reply's.
    /// Requests still waiting for their reply fail with ``EventError/Code/closed``, and so does
    /// every later publish or request. The connection stays open.
    ///
    /// Subscriptions and responders run in the tasks that called ``run(_:)`` or
    /// ``respond(to:with:concurrency:timeout:_:)`` and end when those are cancelled; close the bus once
    /// they have ended (a handler's retry or parking publishes through the bus).
    ///
    /// Releasing the bus without closing it stops reading replies too (the reply consumer is
    /// cancelled); its channels close with the connection.
    public func close() async {
        await replies.close()
        await publishing.close()
    }

    /// A new channel of the connection.
    func openChannel() async throws(EventError) -> AMQPChannel {
        do {
            return try await connection.openChannel()
        } catch {
            throw EventError.broker("opening a channel", error)
        }
    }

    /// Opens a channel of its own, declares on it what `declare` declares (returning the queue),
    /// sets the prefetch and starts consuming; closes the channel if any step fails. The one way
    /// a subscription, a responder and an event stream start consuming.
    func openConsumer(
        prefetch: UInt16, _ what: String, declare: (AMQPChannel) async throws(EventError) -> String
    ) async throws(EventError) -> (channel: AMQPChannel, consumer: AMQPConsumer) {
        let channel = try await openChannel()
        do throws(EventError) {
            let queue = try await declare(channel)
            do {
                try await channel.setPrefetch(count: prefetch)
                return (channel, try await channel.consume(queue: queue))
            } catch {
                throw EventError.broker("consuming \(what) from \(queue)", error)
            }
        } catch {
            await channel.close()
            throw error
        }
    }

    // MARK: Declaring

    /// Declares the durable topic exchange of a domain (`orders`), once per bus.
    func ensureExchange(_ exchange: String, on channel: AMQPChannel) async throws(EventError) {
        guard !declared.withLock({ $0.contains("exchange:" + exchange) }) else { return }
        do {
            try await channel.declareExchange(exchange, type: .topic, durable: true)
        } catch {
            throw EventError.broker("declaring exchange \(exchange)", error)
        }
        declared.withLock { _ = $0.insert("exchange:" + exchange) }
    }

    /// Declares a durable queue whose rejected messages go to its parking lot, the parking lot, and
    /// the delay queues of `retry`'s delayed retries.
    func ensureQueue(
        _ queue: String, type: EventQueueType = .classic, retry: RetryPolicy = .immediate, on channel: AMQPChannel
    ) async throws(EventError) {
        guard !declared.withLock({ $0.contains("queue:" + queue) }) else { return }
        do {
            var parkingArguments: AMQPFieldTable = [:]
            type.add(to: &parkingArguments)
            try await channel.declareQueue(EventTopology.parkingLot(of: queue), durable: true, arguments: parkingArguments)
            for step in retry.delays.indices.map({ $0 + 1 }) {
                try await channel.declareQueue(
                    EventTopology.retryQueue(of: queue, step: step), durable: true,
                    arguments: EventTopology.retryQueueArguments(queue, maximumDelay: retry.maximumDelay(step: step), type: type))
            }
            try await channel.declareQueue(queue, durable: true, arguments: EventTopology.queueArguments(queue, type: type))
        } catch {
            throw EventError.broker("declaring queue \(queue)", error)
        }
        declared.withLock { _ = $0.insert("queue:" + queue) }
    }

    /// Forgets that `queue` was declared (it was deleted): the next use declares it again.
    func forgetDeclared(queue: String) {
        declared.withLock { _ = $0.remove("queue:" + queue) }
    }

    /// Makes sure a work queue exists before sending to it: one its consumers declared (perhaps as
    /// a quorum queue, with delay queues) is used as it is; a missing one is declared with the
    /// defaults.
    func ensureQueueExists(_ queue: String, on channel: AMQPChannel) async throws(EventError) {
        guard !declared.withLock({ $0.contains("queue:" + queue) }) else { return }
        if try await connection.queueExists(queue) {
            declared.withLock { _ = $0.insert("queue:" + queue) }
        } else {
            try await ensureQueue(queue, on: channel)
        }
    }
}

extension AMQPConnection {
    /// Whether `queue` exists, by a passive declare on a channel of its own (a passive declare of
    /// a missing queue closes its channel).
    func queueExists(_ queue: String) async throws(EventError) -> Bool {
        let probe: AMQPChannel
        do {
            probe = try await openChannel()
        } catch {
            throw EventError.broker("opening a channel", error)
        }
        do {
            _ = try await probe.declareQueue(queue, passive: true)
            await probe.close()
            return true
        } catch {
            await probe.close()
            guard error.replyCode == 404 else { throw EventError.broker("checking queue \(queue)", error) }
            return false
        }
    }
}

/// Something opened on first use (a channel, the reply client) and opened again once it is no
/// longer usable (a broker error closed its channel) while the connection is open.
///
/// The opening runs in a task of its own, shared by the callers that want the value meanwhile. It
/// may outlive them all (each stops waiting when cancelled): that is on purpose, the value is
/// kept for the next caller, and the opening is bounded by the connection's timeouts. The task
/// is owned here, in `opening`: ``close()`` and releasing this cancel it, and ``close()`` closes
/// what it opened.
final class OpenedOnFirstUse<Value: Sendable>: Sendable {
    private struct State {
        var opening: Task<Value, any Error>?
        var closed = false
    }

    private let connection: AMQPConnection
    private let what: String
    private let open: @Sendable () async throws -> Value
    private let isUsable: @Sendable (Value) -> Bool
    private let closeValue: @Sendable (Value) async -> Void
    private let state = Mutex(State())

    init(
        _ what: String, on connection: AMQPConnection, open: @escaping @Sendable () async throws -> Value,
        isUsable: @escaping @Sendable (Value) -> Bool, close: @escaping @Sendable (Value) async -> Void
    ) {
        self.what = what
        self.connection = connection
        self.open = open
        self.isUsable = isUsable
        self.closeValue = close
    }

    deinit {
        // An opening still under way has nobody left to use it. (A value opened already goes with
        // its last reference: the reply client's deinit stops its reading.)
        state.withLock { $0.opening?.cancel() }
    }

    func get() async throws(EventError) -> Value {
        let open = self.open
        let task = try state.withLock { state throws(EventError) in
            if state.closed { throw EventError.busClosed }
            if let task = state.opening { return task }
            let opened = Task { try await open() }
            state.opening = opened
            return opened
        }
        let value: Value
        do {
            value = try await task.value
        } catch {
            _ = forget(task)
            if state.withLock({ $0.closed }) { throw EventError.busClosed }
            if let error = error as? EventError { throw error }
            throw EventError.broker("opening \(what)", AMQPError.wrap(error))
        }
        if isUsable(value) || !connection.isOpen { return value }
        // Unusable (say, a broker error closed its channel): closed by the caller that forgets it.
        if forget(task) { await closeValue(value) }
        return try await get()
    }

    /// Closes the value (waiting for an opening under way, which is cancelled) and refuses to
    /// open again.
    func close() async {
        let task = state.withLock { state -> Task<Value, any Error>? in
            state.closed = true
            defer { state.opening = nil }
            return state.opening
        }
        guard let task else { return }
        task.cancel()  // an opening under way stops; one that completed is not affected
        if let value = try? await task.value { await closeValue(value) }
    }

    /// Drops `task` unless another caller did already; returns whether this call did.
    private func forget(_ task: Task<Value, any Error>) -> Bool {
        state.withLock { state in
            guard state.opening == task else { return false }
            state.opening = nil
            return true
        }
    }
}
