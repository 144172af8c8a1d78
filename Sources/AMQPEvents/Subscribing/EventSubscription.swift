import AMQPClient

/// Which events a service takes, from where, how many at once, and what handles each type.
///
/// ```swift
/// let inventory = EventSubscription.publishSubscribe(exchange: "orders", service: "inventory", concurrency: 8)
///     .on(OrderPlaced.self) { order, context in try await reserve(order.items) }
///     .on(OrderCancelled.self) { order, context in try await release(order.items) }
/// ```
///
/// What happens to each message:
/// - its handler returns: acknowledged (and its id recorded, with ``deduplicating(with:)``);
/// - its handler throws: tried again by ``retryPolicy`` (two immediate retries by default;
///   delayed retries held by the broker with ``retrying(_:)``), then parked;
/// - its body does not decode, or no handler takes its type: parked at once.
///
/// Parked means published to the queue's parking lot (`orders.inventory.parked`) with headers
/// saying why (`x-parked-reason`, `x-parked-error`, `x-parked-from-queue`, `x-parked-at`,
/// `x-original-exchange`, `x-original-routing-key`, and for handler failures `x-attempts`,
/// `x-first-failure-at`, `x-last-failure-at`), then acknowledged. Never a crash, never requeued
/// forever. (A transient broadcast subscriber has no parking lot: it logs and drops.) See the
/// *Handling failures* article.
public struct EventSubscription: Sendable {
    /// Where a subscription's events come from, and who else gets them.
    public enum Kind: Sendable, Hashable {
        /// A durable queue per service (`orders.payment`) bound to the domain's durable topic
        /// exchange by the types it handles: every service gets every event, and catches up on
        /// what it missed while it was down.
        case publishSubscribe(exchange: String, service: String)
        /// Competing consumers on one durable queue: each event goes to one of them, fairly.
        case workQueue(queue: String)
        /// An exclusive, server-named queue per live subscriber, bound to the domain's exchange:
        /// events while it runs, nothing kept when it stops.
        case broadcast(exchange: String)
    }

    /// Where its events come from.
    public var kind: Kind
    /// How many events are handled at once. 1 (the default) keeps the queue's order.
    public var concurrency: Int
    /// How many unacknowledged events the broker may send ahead. Unless set, twice the
    /// concurrency and at least 50 (``defaultPrefetch(concurrency:)``): the next events are
    /// already here when a handler finishes, where a prefetch of 1 costs a round trip per event
    /// and caps a quick handler at a few thousand a second. Order is kept either way at
    /// concurrency 1. Set it to the concurrency for fair dispatch of long tasks between workers
    /// that compete for one queue: then a busy worker holds no task another could start.
    public var prefetch: UInt16?
    /// How a failed handler is tried again before its message is parked.
    public var retryPolicy: RetryPolicy = .immediate
    /// Where handled message ids are remembered; `nil`: no deduplication.
    public var deduplication: (any DeduplicationStore)?
    /// The kind of queue its durable queue is.
    public var queueType: EventQueueType = .classic
    /// Runs around every handler call, after the bus's own (see ``EventMiddleware``).
    public var middleware: [any EventMiddleware] = []
    /// How long one handler call may take; `nil`: no limit. A call that takes longer is
    /// cancelled and fails with ``EventError/Code/timedOut``, then is retried or parked.
    public var handlerTimeout: Duration?
    var handlers: [String: EventHandler] = [:]
    /// Upcasts that could not be registered, reported by ``validate()``.
    var invalidUpcasts: [String] = []

    /// A subscription of `kind`, with no handlers yet; add them with ``on(_:_:)``.
    public init(_ kind: Kind, concurrency: Int = 1, prefetch: UInt16? = nil) {
        self.kind = kind
        self.concurrency = concurrency
        self.prefetch = prefetch
    }

    /// `service`'s own durable queue, bound to the domain's topic exchange `exchange` (see
    /// ``Kind/publishSubscribe(exchange:service:)``).
    public static func publishSubscribe(
        exchange: String, service: String, concurrency: Int = 1, prefetch: UInt16? = nil
    ) -> EventSubscription {
        EventSubscription(.publishSubscribe(exchange: exchange, service: service), concurrency: concurrency, prefetch: prefetch)
    }

    /// The durable work queue `queue`, shared with competing consumers (see
    /// ``Kind/workQueue(queue:)``).
    public static func workQueue(_ queue: String, concurrency: Int = 1, prefetch: UInt16? = nil) -> EventSubscription {
        EventSubscription(.workQueue(queue: queue), concurrency: concurrency, prefetch: prefetch)
    }

    /// A queue of this subscriber's own, bound to the domain's exchange `exchange` while it runs
    /// (see ``Kind/broadcast(exchange:)``).
    public static func broadcast(exchange: String, concurrency: Int = 1, prefetch: UInt16? = nil) -> EventSubscription {
        EventSubscription(.broadcast(exchange: exchange), concurrency: concurrency, prefetch: prefetch)
    }

    /// Handles events of `type` with `handler`; its success acknowledges the event.
    public func on<Event: AMQPEvent>(
        _ type: Event.Type, _ handler: @escaping @Sendable (Event, EventContext) async throws -> Void
    ) -> EventSubscription {
        var copy = self
        copy.handlers[Event.eventType] = EventHandler(type: Event.self, handler)
        return copy
    }

    /// With `middleware` around every handler call, after the middleware added before.
    public func using(_ middleware: any EventMiddleware) -> EventSubscription {
        var copy = self
        copy.middleware.append(middleware)
        return copy
    }

    /// With a time limit on each handler call (see ``handlerTimeout``).
    public func timeout(_ limit: Duration) -> EventSubscription {
        var copy = self
        copy.handlerTimeout = limit
        return copy
    }

    /// With `policy` for failed handlers.
    public func retrying(_ policy: RetryPolicy) -> EventSubscription {
        var copy = self
        copy.retryPolicy = policy
        return copy
    }

    /// Handles each message id once: a message the store has seen is acknowledged without
    /// running its handler.
    public func deduplicating(with store: any DeduplicationStore) -> EventSubscription {
        var copy = self
        copy.deduplication = store
        return copy
    }

    /// Its durable queue (and delay queues and parking lot) as quorum queues: replicated on a
    /// cluster, kept when a minority of nodes is lost. `deliveryLimit` caps redeliveries of a
    /// message whose consumer died (RabbitMQ 4 defaults to 20); retries and parking are the
    /// subscription's own, so the limit is a safety net.
    public func onQuorumQueue(deliveryLimit: Int = 20) -> EventSubscription {
        var copy = self
        copy.queueType = .quorum(deliveryLimit: deliveryLimit)
        return copy
    }

    /// The event types it handles, which are also its routing keys.
    public var eventTypes: [String] { handlers.keys.sorted() }

    /// Its durable queue's name; `nil` for a broadcast subscriber's server-named one.
    public var queue: String? {
        switch kind {
        case .publishSubscribe(let exchange, let service): EventTopology.serviceQueue(exchange: exchange, service: service)
        case .workQueue(let queue): queue
        case .broadcast: nil
        }
    }

    /// Where messages no handler could take go; `nil` for a broadcast subscriber.
    public var parkingLot: String? { queue.map(EventTopology.parkingLot(of:)) }

    var exchange: String? {
        switch kind {
        case .publishSubscribe(let exchange, _), .broadcast(let exchange): exchange
        case .workQueue: nil
        }
    }

    func validate() throws(EventError) {
        if let invalid = invalidUpcasts.first {
            throw EventError(code: .invalidArgument, message: invalid)
        }
        guard concurrency >= 1 else {
            throw EventError(code: .invalidArgument, message: "a subscription's concurrency must be at least 1, not \(concurrency)")
        }
        guard concurrency <= Int(UInt16.max) else {
            throw EventError(code: .invalidArgument, message: "a subscription's concurrency must be at most \(UInt16.max)")
        }
        if retryPolicy.delays.contains(where: { $0 <= .zero }) {
            throw EventError(code: .invalidArgument, message: "retry delays must be positive")
        }
        if !retryPolicy.delays.isEmpty && queue == nil {
            throw EventError(code: .invalidArgument, message: "a broadcast subscriber cannot have delayed retries: it has no durable queue")
        }
        if let handlerTimeout, handlerTimeout <= .zero {
            throw EventError(code: .invalidArgument, message: "a handler timeout must be positive, not \(handlerTimeout)")
        }
        if let prefetch, Int(prefetch) < concurrency {
            throw EventError(
                code: .invalidArgument,
                message: "a prefetch of \(prefetch) cannot keep \(concurrency) handlers busy: give at least the concurrency")
        }
    }

    /// The prefetch the subscription asks the broker for: ``prefetch``, or the default.
    public var effectivePrefetch: UInt16 { prefetch ?? Self.defaultPrefetch(concurrency: concurrency) }

    /// Twice the concurrency, at least 50 (see ``prefetch``).
    public static func defaultPrefetch(concurrency: Int) -> UInt16 {
        UInt16(clamping: max(50, 2 * concurrency))
    }
}

/// A handler with its event type erased: reads the payload in whichever schema version it came
/// (upcasting an older one), then calls the application's closure.
struct EventHandler: Sendable {
    /// The body did not decode as the handler's event type.
    struct DecodingFailed: Error {
        var underlying: any Error
    }

    /// The event is of a schema version this handler cannot read: newer than its type's.
    struct UnsupportedVersion: Error, CustomStringConvertible {
        var type: String
        var version: Int
        var newest: Int
        var description: String {
            "\(type) v\(version) is newer than this service reads (v\(newest)): deploy a consumer that reads it, then replay"
        }
    }

    /// An older schema version's reader: decodes the old shape and turns it into the current event.
    struct Upcast: Sendable {
        let read: @Sendable ([UInt8], _ wrapped: Bool, any EventCoder) throws -> any Sendable
        let schema: @Sendable () throws -> JSONValue
    }

    let eventType: String
    let schemaVersion: Int
    /// The current version's payload schema.
    let schema: @Sendable () throws -> JSONValue
    /// Readers of older versions, by version.
    var upcasts: [Int: Upcast] = [:]
    /// Calls the handler with an event an upcast made (boxed: the upcast's type is erased).
    private let call: @Sendable (any Sendable, EventContext) async throws -> Void
    /// Decodes the current version and calls the handler, unboxed: the path of nearly every delivery.
    private let handleCurrent: @Sendable ([UInt8], Bool, EventContext, any EventCoder) async throws -> Void

    init<Event: AMQPEvent>(type: Event.Type, _ handler: @escaping @Sendable (Event, EventContext) async throws -> Void) {
        eventType = Event.eventType
        schemaVersion = Event.schemaVersion
        schema = { try EventSchema.of(Event.self) }
        handleCurrent = { body, wrapped, context, coder in
            let event: Event
            do {
                event = try Self.decode(Event.self, body, wrapped: wrapped, coder)
            } catch {
                throw DecodingFailed(underlying: error)
            }
            try await handler(event, context)
        }
        call = { event, context in try await handler(event as! Event, context) }
    }

    /// Decodes a payload, in place inside a structured CloudEvent when it is wrapped.
    static func decode<Payload: Decodable>(_ type: Payload.Type, _ body: [UInt8], wrapped: Bool, _ coder: any EventCoder) throws -> Payload {
        wrapped ? try coder.decode(CloudEventData<Payload>.self, from: body).data : try coder.decode(Payload.self, from: body)
    }

    func handle(_ body: [UInt8], wrapped: Bool, context: EventContext, coder: any EventCoder) async throws {
        let version = context.metadata.schemaVersion
        guard version <= schemaVersion else {
            throw UnsupportedVersion(type: eventType, version: version, newest: schemaVersion)
        }
        // The current version, or an older one without an upcast: read as the current shape (a
        // compatible change, such as a new optional field).
        guard version < schemaVersion, let upcast = upcasts[version] else {
            return try await handleCurrent(body, wrapped, context, coder)
        }
        let event: any Sendable
        do {
            event = try upcast.read(body, wrapped, coder)
        } catch {
            throw DecodingFailed(underlying: error)
        }
        try await call(event, context)
    }
}

extension EventSubscription {
    /// Reads `version` of `Event` (older than its ``AMQPEvent/schemaVersion``) as `Old`, and
    /// hands the handler of `Event` what `upcast` makes of it. Call it after ``on(_:_:)`` for
    /// `Event`. A version newer than the handler's is parked (``EventError/Code/unsupportedSchemaVersion``);
    /// an older one without an upcast is read as the current shape.
    ///
    /// ```swift
    /// struct OrderPlacedV1: Decodable, Sendable { var orderId: String; var amount: Int }   // cents
    /// let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
    ///     .on(OrderPlaced.self) { order, _ in try await charge(order.total) }              // v2: Money
    ///     .upcasting(OrderPlacedV1.self, version: 1, to: OrderPlaced.self) { old in
    ///         OrderPlaced(orderId: old.orderId, total: Money(cents: old.amount, currency: "EUR"))
    ///     }
    /// ```
    public func upcasting<Old: Decodable & Sendable, Event: AMQPEvent>(
        _ old: Old.Type, version: Int, to event: Event.Type, _ upcast: @escaping @Sendable (Old) throws -> Event
    ) -> EventSubscription {
        var copy = self
        guard var handler = copy.handlers[Event.eventType] else {
            copy.invalidUpcasts.append("an upcast to \(Event.eventType) v\(version) before its handler (call on(_:_:) first)")
            return copy
        }
        guard version >= 1, version < Event.schemaVersion else {
            copy.invalidUpcasts.append(
                "an upcast from \(Event.eventType) v\(version): only versions 1 to \(Event.schemaVersion - 1) are older than the event's")
            return copy
        }
        handler.upcasts[version] = EventHandler.Upcast(
            read: { body, wrapped, coder in try upcast(EventHandler.decode(Old.self, body, wrapped: wrapped, coder)) },
            schema: { try EventSchema.of(Old.self) })
        copy.handlers[Event.eventType] = handler
        return copy
    }
}
