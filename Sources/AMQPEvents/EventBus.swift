public import AMQPClient
public import Logging
import Synchronization

/// Typed events over one ``AMQPConnection``: publish/subscribe, work queues, transient broadcast
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

        public init(
            appID: String? = nil, coder: any EventCoder = JSONEventCoder(), publishAttempts: Int = 5,
            requestTimeout: Duration = .seconds(10)
        ) {
            self.appID = appID
            self.coder = coder
            self.publishAttempts = publishAttempts
            self.requestTimeout = requestTimeout
        }
    }

    public let connection: AMQPConnection
    public let configuration: Configuration
    public let logger: Logger
    /// The channel events are published on, in confirm mode.
    let publishing: LazyChannel
    /// Exchanges and queues this bus declared already (the connection declares them again on recovery).
    private let declared = Mutex<Set<String>>([])
    /// Request/reply's channel, opened by the first request.
    let replies: LazyReplyClient
    /// Message ids of the events it publishes.
    let messageIDs = MessageIDGenerator()

    public init(
        connection: AMQPConnection, configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "amqp-events")
    ) {
        self.connection = connection
        self.configuration = configuration
        self.logger = logger
        self.publishing = LazyChannel(connection: connection, confirms: true)
        self.replies = LazyReplyClient()
    }

    /// A new channel of the connection.
    func openChannel() async throws(EventError) -> AMQPChannel {
        do {
            return try await connection.openChannel()
        } catch {
            throw EventError.broker("opening a channel", error)
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

    /// Makes sure a work queue exists before sending to it: one its consumers declared (perhaps as
    /// a quorum queue, with delay queues) is used as it is; a missing one is declared with the
    /// defaults.
    func ensureQueueExists(_ queue: String, on channel: AMQPChannel) async throws(EventError) {
        guard !declared.withLock({ $0.contains("queue:" + queue) }) else { return }
        // On a channel of its own: a passive declare of a missing queue closes its channel.
        let probe = try await openChannel()
        do {
            _ = try await probe.declareQueue(queue, passive: true)
            await probe.close()
            declared.withLock { _ = $0.insert("queue:" + queue) }
        } catch {
            await probe.close()
            guard error.replyCode == 404 else { throw EventError.broker("checking queue \(queue)", error) }
            try await ensureQueue(queue, on: channel)
        }
    }

    /// Forgets what was declared, after a channel error that may have been about it.
    func forgetDeclarations() {
        declared.withLock { $0.removeAll() }
    }
}

/// A channel opened on first use and opened again if it was closed (a broker error closes one).
final class LazyChannel: Sendable {
    private let connection: AMQPConnection
    private let confirms: Bool
    private let opening = Mutex<Task<AMQPChannel, any Error>?>(nil)

    init(connection: AMQPConnection, confirms: Bool) {
        self.connection = connection
        self.confirms = confirms
    }

    func get() async throws(EventError) -> AMQPChannel {
        let (connection, confirms) = (self.connection, self.confirms)
        let task = opening.withLock { task in
            if let task { return task }
            let opened = Task { () async throws -> AMQPChannel in
                let channel = try await connection.openChannel()
                if confirms { try await channel.enablePublisherConfirms() }
                return channel
            }
            task = opened
            return opened
        }
        do {
            let channel = try await task.value
            if channel.isOpen || !connection.isOpen { return channel }
            // Closed by a broker error: the next call opens another.
            opening.withLock { if $0 == task { $0 = nil } }
            return try await get()
        } catch let error as EventError {
            throw error
        } catch {
            opening.withLock { if $0 == task { $0 = nil } }
            throw EventError.broker("opening a channel", AMQPError.wrapping(error))
        }
    }
}

extension AMQPError {
    /// `error` as an ``AMQPError`` (it is one whenever the client threw it).
    static func wrapping(_ error: any Error) -> AMQPError {
        (error as? AMQPError) ?? AMQPError(code: .library, message: "\(error)")
    }
}
