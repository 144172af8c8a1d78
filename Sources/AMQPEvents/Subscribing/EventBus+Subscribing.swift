import AMQPClient
public import ServiceLifecycle

extension EventBus {
    /// Declares what `subscription` needs (exchange, durable queue and parking lot, bindings by
    /// event type), so that events published from now on reach it even before it runs. ``run(_:)``
    /// does this too. A broadcast subscriber's queue exists only while it runs.
    public func declare(_ subscription: EventSubscription) async throws(EventError) {
        try subscription.validate()
        guard subscription.queue != nil else { return }
        _ = try await declareTopology(subscription, on: try await publishing.get())
    }

    /// Runs `subscription` until the task is cancelled, a graceful shutdown (ServiceLifecycle)
    /// begins, or the consumer ends. On a graceful shutdown it stops taking new events, finishes
    /// and settles those in flight, then returns.
    public func run(_ subscription: EventSubscription) async throws(EventError) {
        try await start(subscription).run()
    }

    /// Declares the subscription's topology and starts consuming; events are handled once the
    /// returned subscription runs. Use it when something must happen only once the subscriber
    /// listens (a broadcast subscriber's queue exists only from then on).
    public func start(_ subscription: EventSubscription) async throws(EventError) -> RunningSubscription {
        try subscription.validate()
        let (channel, consumer) = try await openConsumer(prefetch: subscription.effectivePrefetch, "events") { channel throws(EventError) in
            try await declareTopology(subscription, on: channel)
        }
        logger.debug(
            "subscription started",
            metadata: [LoggingKeys.queue: .untrusted(consumer.queue), LoggingKeys.eventTypes: "\(subscription.eventTypes)"])
        return RunningSubscription(bus: self, subscription: subscription, channel: channel, consumer: consumer)
    }

    /// The subscription as a `Service` for a `ServiceGroup`: it runs until a graceful shutdown.
    public func service(for subscription: EventSubscription) -> some Service {
        SubscriptionService(bus: self, subscription: subscription)
    }

    // MARK: Topology

    /// Declares the subscription's exchange, queue, parking lot and bindings; returns the queue.
    func declareTopology(_ subscription: EventSubscription, on channel: AMQPChannel) async throws(EventError) -> String {
        if let exchange = subscription.exchange { try await ensureExchange(exchange, on: channel) }
        let queue: String
        if let durable = subscription.queue {
            try await ensureQueue(durable, type: subscription.queueType, retry: subscription.retryPolicy, on: channel)
            queue = durable
        } else {
            do {
                queue = try await channel.declareQueue("", exclusive: true).name
            } catch {
                throw EventError.broker("declaring a broadcast queue", error)
            }
        }
        if let exchange = subscription.exchange {
            for type in subscription.eventTypes {
                do {
                    try await channel.bindQueue(queue, to: exchange, routingKey: type)
                } catch {
                    throw EventError.broker("binding \(queue) to \(exchange) for \(type)", error)
                }
            }
        }
        return queue
    }

    // MARK: Consuming

    /// Hands each delivery to `handle`, at most `concurrency` at once (in order, one at a time,
    /// for 1), until the consumer ends; a graceful shutdown cancels the consumer and lets the
    /// handlers in flight finish.
    func consumeConcurrently(
        _ consumer: AMQPConsumer, concurrency: Int, handle: @escaping @Sendable (AMQPDelivery) async -> Void
    ) async throws(EventError) {
        do {
            try await withGracefulShutdownHandler {
                if concurrency == 1 {
                    try await consumeOneAtATime(consumer, handle: handle)
                    return
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    var running = 0
                    for try await delivery in consumer {
                        if running >= concurrency {
                            try await group.next()
                            running -= 1
                        }
                        group.addTask { await handle(delivery) }
                        running += 1
                    }
                    try await group.waitForAll()
                }
            } onGracefulShutdown: {
                // Synchronous, no task: basic.cancel is sent, the sequence ends now, and the
                // deliveries prefetched but not started go back to the queue for another consumer.
                consumer.requestStop()
            }
        } catch is CancellationError {
            return
        } catch {
            throw EventError.broker("consuming from \(consumer.queue)", AMQPError.wrap(error))
        }
    }

    /// Hands each delivery to `handle` in order, on the connection's I/O thread while every
    /// call is quick (see ``HandlerPlacement``), so that an event costs one thread wake-up.
    private func consumeOneAtATime(
        _ consumer: AMQPConsumer, handle: @escaping @Sendable (AMQPDelivery) async -> Void
    ) async throws {
        var placement = HandlerPlacement(quickLimit: configuration.quickHandlerLimit)
        var deliveries = consumer.makeAsyncIterator()
        let executor = connection.taskExecutor
        while true {
            let ended =
                if placement.onConnectionThread {
                    try await withTaskExecutorPreference(executor) {
                        try await handleInPlace(from: &deliveries, placedBy: &placement, handle, queue: consumer.queue)
                    }
                } else {
                    try await handleInPlace(from: &deliveries, placedBy: &placement, handle, queue: consumer.queue)
                }
            if ended { return }
        }
    }

    /// Handles deliveries until the consumer ends (`true`) or the handler moves (`false`).
    private func handleInPlace(
        from deliveries: inout AMQPConsumer.AsyncIterator, placedBy placement: inout HandlerPlacement,
        _ handle: @Sendable (AMQPDelivery) async -> Void, queue: String
    ) async throws -> Bool {
        while let delivery = try await deliveries.next() {
            let start = ContinuousClock.now
            await handle(delivery)
            let elapsed = start.duration(to: .now)
            switch placement.record(elapsed) {
            case .stay:
                continue
            case .moveOff:
                logger.debug(
                    "a handler call took \(elapsed), longer than quickHandlerLimit: handling off the connection's thread",
                    metadata: [LoggingKeys.queue: .untrusted(queue)])
                return false
            case .moveOn:
                return false
            }
        }
        return true
    }
}
