import AMQPClient

/// An event on its way to its handler: what a middleware sees.
public struct IncomingEvent: Sendable {
    /// The handler's context: envelope, queue, retry count, the bus.
    public let context: EventContext
    /// The payload, not yet decoded (the handler decodes it as its event type). For a
    /// structured CloudEvent, the whole envelope: the payload is its `data` member.
    public let body: [UInt8]
    /// Whether the payload is the `data` member of a structured CloudEvent in ``body``.
    let payloadIsWrapped: Bool
    /// The delivery it came in, for the processing span.
    let delivery: AMQPDelivery

    /// The event's envelope: its type, message id, headers and the rest (the context's).
    public var metadata: EventMetadata { context.metadata }
}

/// Code that runs around every handler call of a subscription: timing, validation,
/// authorization, a tenant's context, a circuit breaker. Call `next` to go on to the next
/// middleware and, at the end, the handler; return without calling it to settle the event as
/// handled (acknowledged); throw to fail the call, which is then retried or parked as the
/// handler's own error would be (throw a ``NonRetryableError`` to park it at once).
///
/// ```swift
/// struct RequireTenant: EventMiddleware {
///     func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
///         guard event.metadata.headers["x-tenant"] != nil else { throw DoNotRetry(MissingTenant()) }
///         try await next(event)
///     }
/// }
/// let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
///     .using(RequireTenant())
///     .on(OrderPlaced.self) { order, context in try await charge(order) }
/// ```
///
/// The pipeline, outermost first: deduplication (``EventSubscription/deduplicating(with:)``), the
/// bus's middleware (``EventBus/Configuration/middleware``), the subscription's
/// (``EventSubscription/using(_:)``), in the order given, then the immediate retries of the
/// ``RetryPolicy``, the processing span, the handler's timeout (``EventSubscription/timeout(_:)``),
/// and the handler. So a middleware sees an event once however often its handler is retried
/// in place, and a delayed retry (a new delivery) passes it again.
public protocol EventMiddleware: Sendable {
    /// Runs around the rest of the pipeline for one event.
    ///
    /// - Parameters:
    ///   - event: the event, its context and its undecoded body.
    ///   - next: the rest of the pipeline; call it with `event` to go on, or not at all to settle
    ///     the event as handled.
    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws
}

/// Handles each message id once per queue: one the store has seen is settled without running
/// the rest of the pipeline; one handled now is recorded.
struct DeduplicationMiddleware: EventMiddleware {
    let store: any DeduplicationStore

    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        let (messageID, queue, bus) = (event.metadata.messageID, event.context.queue, event.context.bus)
        guard !messageID.isEmpty else { return try await next(event) }
        let seen: Bool
        do {
            seen = try await store.contains(messageID, subscriber: queue)
        } catch {
            // Handling again is safer than dropping: the handler may still be idempotent.
            bus.logger.warning("the deduplication store failed; handling the message", metadata: [LoggingKeys.error: .untrusted(error)])
            seen = false
        }
        if seen {
            bus.logger.debug("acknowledging a message handled already", metadata: [LoggingKeys.messageID: .untrusted(messageID)])
            return
        }
        try await next(event)
        do {
            try await store.record(messageID, subscriber: queue)
        } catch {
            bus.logger.warning(
                "could not record a handled message for deduplication",
                metadata: [LoggingKeys.messageID: .untrusted(messageID), LoggingKeys.error: .untrusted(error)])
        }
    }
}

/// The ``RetryPolicy``'s immediate retries: the rest of the pipeline runs again at once, up to
/// `retries` more times. What cannot be fixed by trying again (an undecodable body, a
/// ``NonRetryableError``) is not retried.
struct ImmediateRetryMiddleware: EventMiddleware {
    let retries: Int

    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        var attempt = 0
        while true {
            do {
                return try await next(event)
            } catch {
                if attempt >= retries || error is EventHandler.DecodingFailed || error is any NonRetryableError || Task.isCancelled {
                    throw error
                }
                attempt += 1
            }
        }
    }
}

/// The processing span (OpenTelemetry's `process` span, linked to the publisher's) and
/// ``EventContext/current`` around the rest of the pipeline.
struct ProcessingSpanMiddleware: EventMiddleware {
    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        try await event.delivery.withProcessingSpan { _ in
            try await EventContext.$current.withValue(event.context) {
                try await next(event)
            }
        }
    }
}

/// Fails a handler call that takes longer than `limit` with ``EventError/Code/timedOut``: the
/// handler's task is cancelled (handlers end when cancelled, as `Task.sleep` and the client's
/// calls do), and the event is retried or parked by the subscription's policy.
struct TimeoutMiddleware: EventMiddleware {
    let limit: Duration

    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        let limit = self.limit
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await next(event)
                return true
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return false
            }
            defer { group.cancelAll() }
            guard let handled = try await group.next(), handled else {
                throw EventError(code: .timedOut, message: "the handler of \(event.metadata.type) took longer than \(limit)")
            }
        }
    }
}

/// Composes `middleware` around `handler`: the first element is the outermost.
func chain(
    _ middleware: [any EventMiddleware], around handler: @escaping @Sendable (IncomingEvent) async throws -> Void
) -> @Sendable (IncomingEvent) async throws -> Void {
    middleware.reversed().reduce(handler) { next, layer in
        { event in try await layer.handle(event, next: next) }
    }
}
