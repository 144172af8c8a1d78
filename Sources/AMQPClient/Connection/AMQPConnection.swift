import Synchronization
public import Logging
public import ServiceLifecycle
public import CoreMetrics
public import Tracing

/// A connection to a RabbitMQ broker (AMQP 0-9-1).
///
/// ```swift
/// let connection = try await AMQPConnection.connect(to: .init(url: "amqp://guest:guest@localhost:5672/"))
/// let channel = try await connection.openChannel()
/// try await channel.declareQueue("user_events", durable: true)
/// try await channel.publish(#"{"type":"USER_REGISTERED"}"#, routingKey: "user_events")
/// await connection.close()
/// ```
///
/// Each connection runs one I/O thread that owns the librabbitmq connection: it writes what
/// the application sends, reads every frame, and keeps heartbeats going. Any number of tasks
/// may use the connection and its channels at the same time.
///
/// Close a connection with ``close()`` (or use ``withConnection(to:logger:_:)``); keep a
/// reference to it for as long as its channels are in use, since releasing the last one closes
/// it.
///
/// When the socket fails or the broker closes the connection, the connection recovers by
/// itself: it reconnects and restores its channels, topology and consumers (see
/// ``Configuration/Recovery`` and ``events()``). With recovery disabled, or once it gives up,
/// every pending call throws, every consumer sequence ends with the error, and ``closed()``
/// returns it.
///
/// As a `Service`, a connection runs until graceful shutdown and then closes itself; it
/// throws if the connection fails for good.
public final class AMQPConnection: Sendable {
    let core: ConnectionCore

    /// The configuration this connection was opened with.
    public var configuration: Configuration { core.configuration }

    init(core: ConnectionCore) {
        self.core = core
    }

    /// A connection nobody can close any more would keep its thread and socket forever: close it,
    /// and say so, since its channels stop working too.
    deinit {
        guard core.isOpen else { return }
        core.logger.warning("AMQPConnection released without close(); closing it (its channels close too)")
        core.beginClose()
    }

    /// Opens a connection and logs in. Throws ``AMQPError`` with ``AMQPError/Code/connectionFailed``,
    /// ``AMQPError/Code/connectTimeout``, ``AMQPError/Code/authenticationFailed`` or
    /// ``AMQPError/Code/accessRefused`` when it cannot.
    ///
    /// - Parameters:
    ///   - configuration: the broker to connect to and how.
    ///   - logger: where the connection logs; every line carries the connection's name.
    ///   - tracer: where the connection's spans go (see <doc:Observability>); `nil` takes the
    ///     tracer bootstrapped with `InstrumentationSystem` when the connection opens. With none,
    ///     tracing costs nothing.
    ///   - metricsFactory: where the connection's metrics go; `nil` takes the factory bootstrapped
    ///     with `MetricsSystem`. With none, metrics cost nothing.
    public static func connect(
        to configuration: Configuration,
        logger: Logger = Logger(label: "amqp-client"),
        tracer: (any Tracer)? = nil,
        metricsFactory: (any MetricsFactory)? = nil
    ) async throws(AMQPError) -> AMQPConnection {
        try configuration.validate()
        var logger = logger
        // Every line names its connection: the configured name, else a number unique in the process.
        logger[metadataKey: LoggingKeys.connection] = "\(configuration.connectionName ?? "connection-\(nextConnectionNumber())")"
        let tracer = tracer ?? (InstrumentationSystem.tracer is NoOpTracer ? nil : InstrumentationSystem.tracer)
        let factory = metricsFactory ?? (MetricsSystem.factory is NOOPMetricsHandler ? nil : MetricsSystem.factory)
        let core = try ConnectionCore(
            configuration: configuration, logger: logger, tracer: tracer, metrics: factory.map(MessagingMetrics.init))
        try await IOLoop.start(core: core)
        return AMQPConnection(core: core)
    }

    /// Opens a connection to an AMQP URI such as `amqp://user:password@host:5672/vhost`.
    public static func connect(
        url: String,
        logger: Logger = Logger(label: "amqp-client")
    ) async throws(AMQPError) -> AMQPConnection {
        try await connect(to: Configuration(url: url), logger: logger)
    }

    /// Opens a connection, runs `body` with it, and closes it however `body` ends. The result
    /// need not be `Sendable`: it is handed over to the caller.
    public static func withConnection<Result>(
        to configuration: Configuration,
        logger: Logger = Logger(label: "amqp-client"),
        _ body: (AMQPConnection) async throws -> sending Result
    ) async throws -> sending Result {
        try await withClosing(connect(to: configuration, logger: logger), close: { await $0.close() }, body)
    }

    /// Opens a new channel.
    public func openChannel() async throws(AMQPError) -> AMQPChannel {
        try await withCancellableContinuation { continuation in
            core.submitOrFail(.openChannel(continuation))
        }
    }

    /// Opens a channel, runs `body` with it, and closes the channel however `body` ends. The
    /// result need not be `Sendable`: it is handed over to the caller.
    public func withChannel<Result>(
        _ body: (AMQPChannel) async throws -> sending Result
    ) async throws -> sending Result {
        try await withClosing(openChannel(), close: { await $0.close() }, body)
    }

    /// The connection's I/O thread as a task executor, for consumers that want each delivery
    /// as soon as the socket has it.
    ///
    /// By default a consumer's task runs on Swift's global executor, and each delivery that finds
    /// it waiting costs one thread wake-up to hand over. A task that prefers this executor runs
    /// on the I/O thread itself, between reading frames: deliveries, acks and replies need no
    /// hand-off. In `amqp-bench` that brings a publish-to-deliver round trip from 1.2–1.35 ×
    /// raw librabbitmq to 1.05–1.1 ×, and takes about a third off the CPU of consumers that
    /// wait for every message.
    ///
    /// ```swift
    /// try await withTaskExecutorPreference(connection.taskExecutor) {
    ///     for try await delivery in try await channel.consume(queue: "user_events") {
    ///         try await handle(delivery)  // awaits other services freely; must not block
    ///         try await delivery.ack()
    ///     }
    /// }
    /// ```
    ///
    /// Only do short, non-blocking work there: while code runs on the I/O thread, no channel
    /// of the connection reads or writes, and heartbeats wait too (a stall of two heartbeat
    /// intervals makes the broker drop the connection). Awaiting is fine: the thread is free
    /// while the task is suspended. Blocking calls, long computations and blocking locks
    /// belong elsewhere; the connection logs a warning when its thread was held for 100 ms.
    ///
    /// Once the connection has closed, such tasks run on the global executor.
    public var taskExecutor: any TaskExecutor { core }

    /// The node the connection is on (or was last on, while it recovers): with several
    /// ``Configuration/endpoints``, which one took it.
    public var currentEndpoint: Configuration.Endpoint? { core.endpoint }

    /// What the broker said about itself when the connection opened: `product`, `version`,
    /// `cluster_name`, `capabilities`, …
    public var serverProperties: AMQPFieldTable { core.serverProperties }

    /// The broker's version (`3.10.8`), from ``serverProperties``.
    public var serverVersion: String? {
        if case .string(let version) = serverProperties["version"] { return version }
        return nil
    }

    /// `false` once the connection is closing or closed. A connection that is recovering is open.
    public var isOpen: Bool { core.isOpen }

    /// Whether the connection was lost and is reconnecting; see ``Configuration/Recovery``.
    /// Calls made meanwhile wait for it.
    public var isRecovering: Bool { core.isRecovering }

    /// Whether the application closed the connection (``close()``, or a graceful shutdown of its
    /// `Service`), as opposed to a failure: what was using it ended as asked, not in error.
    package var isClosedByApplication: Bool { core.isClosedByApplication }

    /// While the broker blocks publishing on this connection (a memory or disk alarm), the
    /// reason it gave; otherwise `nil`. Publishes made while blocked wait in the connection's
    /// buffer until the broker unblocks it.
    public var blockedReason: String? { core.blockedReason }

    /// Closes the connection: sends what was already queued, then `connection.close`, and waits
    /// up to ``Configuration/closeTimeout`` for the broker to confirm. Consumers end; pending
    /// calls throw ``AMQPError/Code/connectionClosed``. Safe to call more than once.
    ///
    /// Returns within about ``Configuration/closeTimeout`` whatever the connection is doing,
    /// also while it recovers from a broker that cannot be reached: the connection refuses new
    /// work at once, and its thread finishes by itself. A cancelled task returns at once; the
    /// connection goes on closing.
    public func close() async {
        core.beginClose()
        _ = await core.waitUntilClosedAfterClosing()
    }

    /// The connection's events, from now on: blocked and unblocked, each step of a recovery,
    /// and the end. A connection already blocked starts with `.blocked`. The sequence ends after
    /// `.closed`. Each call returns a new, independent sequence; one that is not iterated keeps
    /// only its newest 256 events.
    ///
    /// ```swift
    /// for await event in connection.events() {
    ///     if case .blocked(let reason) = event { logger.warning("publishing paused: \(reason)") }
    /// }
    /// ```
    public func events() -> AsyncStream<Event> {
        core.events()
    }

    /// Waits until the connection has ended. Returns the error that ended it, or `nil` when the
    /// application closed it; if the waiting task is cancelled first, an error with
    /// ``AMQPError/Code/cancelled`` (the connection goes on).
    public func closed() async -> AMQPError? {
        do {
            return try await core.waitUntilClosed()
        } catch {
            return error
        }
    }
}

extension AMQPConnection: Service {
    /// Runs until graceful shutdown or cancellation (then closes the connection, within
    /// ``Configuration/closeTimeout``) or until the connection fails (then throws why). In a
    /// `ServiceGroup` whose other service fails, the group's cancellation closes it.
    public func run() async throws {
        // Until the connection ends by itself, or a graceful shutdown or cancellation comes.
        do {
            if let error = try await cancelWhenGracefulShutdown({ try await self.core.waitUntilClosed() }) { throw error }
            return
        } catch let error as AMQPError where error.code != .cancelled {
            throw error
        } catch {
            // Shutting down.
        }
        // Then close it, waiting at most closeTimeout (a cancelled task does not wait: the
        // connection goes on closing by itself).
        core.beginClose()
        if let error = await core.waitUntilClosedAfterClosing() { throw error }
    }
}

private let connectionNumbers = Atomic<Int>(0)

/// 1, 2, 3, …: names the connections that have no ``AMQPConnection/Configuration/connectionName`` in logs.
func nextConnectionNumber() -> Int {
    connectionNumbers.add(1, ordering: .relaxed).newValue
}
