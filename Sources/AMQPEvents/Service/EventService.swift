public import AMQPClient
public import Logging
public import ServiceLifecycle

/// An event-driven application's messaging as one `Service`: it owns the connection, the
/// ``EventBus``, the subscriptions, the responders and any other service that publishes through
/// the bus (an outbox relay), and starts and stops them in the one order that loses nothing.
///
/// ```swift
/// let messaging = EventService(configuration: .init(connection: .init(url: url), bus: .init(appID: "payments"))) { bus, parts in
///     parts.subscribe(
///         .publishSubscribe(exchange: "orders", service: "payment").on(OrderPlaced.self) { order, context in
///             try await charge(order)
///         })
///     parts.respond(to: "payments.quote", with: QuoteRequest.self) { request, _ in Quote(for: request) }
/// }
/// let group = ServiceGroup(services: [messaging], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
///
/// ``run()`` connects, builds the parts, declares and starts every subscription and responder (so
/// each is consuming before any event is handled or request sent), then runs them with the
/// services. On a graceful shutdown (SIGTERM) every subscription and responder stops taking new
/// messages, the handlers in flight finish and settle, the services finish what they are doing
/// (the relay its batch), and only then do the bus and the connection close. Cancelling the task
/// stops them at once instead; unsettled messages go back to their queues with the connection.
public struct EventService: Service {
    /// What the service connects to, and how its bus publishes and handles events.
    public struct Configuration: Sendable {
        /// The broker to connect to, and how.
        public var connection: AMQPConnection.Configuration
        /// The configuration of the service's ``EventBus``.
        public var bus: EventBus.Configuration

        /// The broker to connect to, and the bus's configuration (the default unless given).
        public init(connection: AMQPConnection.Configuration, bus: EventBus.Configuration = .init()) {
            self.connection = connection
            self.bus = bus
        }
    }

    /// What the service runs, collected by the set-up closure.
    public struct Parts: Sendable {
        /// The subscriptions the service handles, in the order they were added.
        public private(set) var subscriptions: [EventSubscription] = []
        private(set) var services: [any Service] = []

        /// No parts yet.
        public init() {}

        /// Handles a subscription's events.
        public mutating func subscribe(_ subscription: EventSubscription) {
            subscriptions.append(subscription)
        }

        /// Answers requests sent to `queue` (see ``EventBus/respond(to:with:concurrency:timeout:_:)``).
        public mutating func respond<Request: AMQPRequest>(
            to queue: String, with type: Request.Type, concurrency: Int = 1, timeout: Duration? = nil,
            _ handler: @escaping @Sendable (Request, EventContext) async throws -> Request.Response
        ) {
            services.append(ResponderService(queue: queue, concurrency: concurrency, timeout: timeout, handler: handler, bus: nil))
        }

        /// Runs another service that uses the bus, such as an outbox relay. It starts after the
        /// subscriptions are consuming and gets the same graceful shutdown.
        public mutating func run(_ service: some Service) {
            services.append(service)
        }

        /// What the service's contract says it publishes, sends and requests (see
        /// ``AsyncAPIDocument/add(_:as:)``): publishing itself needs no declaration.
        private(set) var contract: [@Sendable (inout AsyncAPIDocument, String) throws -> Void] = []

        /// Declares, for the service's AsyncAPI document, that it publishes `type` to `exchange`.
        public mutating func publishes<Event: AMQPEvent>(_ type: Event.Type, to exchange: String) {
            contract.append { document, service in try document.publishes(type, to: exchange, by: service) }
        }

        /// Declares, for the service's AsyncAPI document, that it sends `type` to the work queue `queue`.
        public mutating func sends<Event: AMQPEvent>(_ type: Event.Type, toQueue queue: String) {
            contract.append { document, service in try document.sends(type, toQueue: queue, by: service) }
        }

        /// Declares, for the service's AsyncAPI document, that it requests `type` from `queue`'s responder.
        public mutating func requests<Request: AMQPRequest>(_ type: Request.Type, to queue: String) {
            contract.append { document, service in try document.requests(type, to: queue, by: service) }
        }
    }

    /// The configuration the service was created with.
    public let configuration: Configuration
    /// Where the service, its connection and its bus log.
    public let logger: Logger
    private let setUp: @Sendable (EventBus, inout Parts) async throws -> Void

    /// A service that connects when it runs, and lists its parts with `setUp`.
    ///
    /// - Parameters:
    ///   - configuration: the connection and bus settings.
    ///   - logger: where the service, its connection and its bus log.
    ///   - setUp: Called once connected, with the bus, to list what the service runs.
    public init(
        configuration: Configuration, logger: Logger = Logger(label: "amqp-events"),
        _ setUp: @escaping @Sendable (EventBus, inout Parts) async throws -> Void
    ) {
        self.configuration = configuration
        self.logger = logger
        self.setUp = setUp
    }

    public func run() async throws {
        let connection = try await AMQPConnection.connect(to: configuration.connection, logger: logger)
        let bus = EventBus(connection: connection, configuration: configuration.bus, logger: logger)
        do {
            try await run(on: bus)
        } catch {
            await bus.close()
            await connection.close()
            throw error
        }
        // Everything that could publish or settle has ended: now the bus, then the connection.
        await bus.close()
        await connection.close()
        logger.debug("event service stopped")
    }

    /// Builds the parts and runs them on `bus` until they have all ended.
    private func run(on bus: EventBus) async throws {
        var parts = Parts()
        try await setUp(bus, &parts)
        try await parts.run(on: bus, logger: logger)
    }
}

extension EventService.Parts {
    /// Runs the parts on `bus` until they have all ended (by a graceful shutdown, or cancelled);
    /// `consuming` is called once every subscription and responder consumes.
    package func run(on bus: EventBus, logger: Logger, consuming: @Sendable () -> Void = {}) async throws {
        // Every subscription and responder consumes before any event is handled, and before the
        // services (a relay publishing to a subscription's queue) start: a request sent as soon
        // as the service is ready finds its responder's queue.
        var started: [RunningSubscription] = []
        for subscription in subscriptions {
            started.append(try await bus.start(subscription))
        }
        var responders: [StartedResponder] = []
        var otherServices: [any Service] = []
        for service in services {
            if let responder = service as? any ResponderRunning {
                responders.append(try await responder.start(on: bus))
            } else {
                otherServices.append(service)
            }
        }
        logger.debug(
            "event service running",
            metadata: [LoggingKeys.subscriptions: "\(started.count)", LoggingKeys.services: "\(services.count)"])
        consuming()
        try await withThrowingDiscardingTaskGroup { group in
            for subscription in started {
                group.addTask { try await subscription.run() }
            }
            for responder in responders {
                group.addTask { try await endingWithItsConnection(bus) { () async throws in try await responder.run() } }
            }
            for service in otherServices {
                group.addTask { try await service.run() }
            }
        }
    }
}

/// A responder that learns its bus when the ``EventService`` runs it.
protocol ResponderRunning: Service {
    /// Declares its queue and consumes it on `bus`; running the result answers the requests.
    func start(on bus: EventBus) async throws(EventError) -> StartedResponder
    /// Adds what it answers to an AsyncAPI document.
    func describe(in document: inout AsyncAPIDocument, as service: String) throws(EventError)
}

/// A responder as a `Service`: it answers requests until a graceful shutdown, then finishes the
/// requests in flight.
struct ResponderService<Request: AMQPRequest>: ResponderRunning {
    let queue: String
    let concurrency: Int
    let timeout: Duration?
    let handler: @Sendable (Request, EventContext) async throws -> Request.Response
    let bus: EventBus?

    func run() async throws {
        guard let bus else {
            throw EventError(code: .invalidArgument, message: "a responder added to an EventService runs only inside it")
        }
        try await run(on: bus)
    }

    func describe(in document: inout AsyncAPIDocument, as service: String) throws(EventError) {
        try document.responds(to: queue, with: Request.self, as: service)
    }

    func run(on bus: EventBus) async throws {
        try await endingWithItsConnection(bus) {
            try await bus.respond(to: queue, with: Request.self, concurrency: concurrency, timeout: timeout, handler)
        }
    }

    func start(on bus: EventBus) async throws(EventError) -> StartedResponder {
        try await bus.startResponder(to: queue, with: Request.self, concurrency: concurrency, timeout: timeout, handler)
    }
}

extension EventBus {
    /// A responder as a `Service` for a `ServiceGroup` (see ``respond(to:with:concurrency:timeout:_:)``).
    public func responder<Request: AMQPRequest>(
        to queue: String, with type: Request.Type, concurrency: Int = 1, timeout: Duration? = nil,
        _ handler: @escaping @Sendable (Request, EventContext) async throws -> Request.Response
    ) -> some Service {
        ResponderService(queue: queue, concurrency: concurrency, timeout: timeout, handler: handler, bus: self)
    }
}

/// Runs a subscription or responder as a `Service`. If the application closed the connection
/// underneath it (a `ServiceGroup` that lists the connection after it shuts the connection down
/// first), it has not failed, whether its consumer ended or it could not start: it waits for its
/// own turn to shut down instead of returning early or throwing, either of which a
/// `ServiceGroup` reports as an error.
func endingWithItsConnection(_ bus: EventBus, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        guard bus.connection.isClosedByApplication else { throw error }
    }
    guard bus.connection.isClosedByApplication, !Task.isShuttingDownGracefully, !Task.isCancelled else { return }
    try await gracefulShutdown()
}

extension AsyncAPIDocument {
    /// Adds what an ``EventService``'s parts do, as `service`: its subscriptions, its responders,
    /// and what it declared it publishes, sends and requests.
    public mutating func add(_ parts: EventService.Parts, as service: String) throws(EventError) {
        for subscription in parts.subscriptions { try subscribes(subscription, as: parts.subscriptions.count == 1 ? service : nil) }
        for case let responder as any ResponderRunning in parts.services { try responder.describe(in: &self, as: service) }
        for declaration in parts.contract {
            do {
                try declaration(&self, service)
            } catch {
                throw error as? EventError ?? EventError(code: .invalidArgument, message: "\(error)")
            }
        }
    }
}
