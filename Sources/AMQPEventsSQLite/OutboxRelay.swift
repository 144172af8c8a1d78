#if SQLite
public import AMQPEvents
import AMQPClient
import Logging
public import ServiceLifecycle

/// Publishes the events an ``SQLiteEventStore`` holds in its outbox, oldest first, with the bus's
/// lossless defaults, and marks each sent only once the broker confirmed it. Run it as a `Service`
/// next to the code that enqueues: it polls, and ``wakeUp()`` makes it look at once.
///
/// An event may be published twice (the process died after the confirm and before marking it
/// sent): it carries the same message id both times, and deduplicating consumers absorb it.
public final class OutboxRelay: Service, Sendable {
    let store: SQLiteEventStore
    let bus: EventBus
    let pollInterval: Duration
    let batchSize: Int
    private let wakeUps: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    public init(store: SQLiteEventStore, bus: EventBus, pollInterval: Duration = .milliseconds(500), batchSize: Int = 500) {
        self.store = store
        self.bus = bus
        self.pollInterval = pollInterval
        self.batchSize = max(1, batchSize)
        (wakeUps, wake) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Looks at the outbox now (call it after a commit that enqueued events).
    public func wakeUp() {
        wake.yield()
    }

    /// Publishes what is due now, until nothing is; returns how many it published. An event the
    /// broker does not take (unroutable, refused) waits with a backoff from 1 s to 5 min, and holds
    /// up only the later events to its exchange and routing key; the others go on.
    @discardableResult
    public func publishPending() async throws -> Int {
        var published = 0
        while true {
            let pending = try await store.pending(limit: batchSize)
            if pending.isEmpty { return published }
            var sent: [Int64] = []
            var waiting: Set<String> = []  // destinations held up in this batch by a failure
            for event in pending {
                let destination = event.exchange + "\u{0}" + event.routingKey
                if waiting.contains(destination) { continue }
                do {
                    try await bus.publish(
                        encoded: event.body, metadata: event.metadata, to: event.exchange, routingKey: event.routingKey)
                    sent.append(event.id)
                } catch {
                    waiting.insert(destination)
                    let retryAt = try await store.markFailed(event.id, error: "\(error)")
                    bus.logger.warning(
                        "the outbox relay could not publish an event; it waits, and so do later events to its destination",
                        metadata: [
                            LoggingKeys.messageID: "\(LogText.untrusted(event.metadata.messageID))",
                            LoggingKeys.exchange: "\(LogText.untrusted(event.exchange))",
                            LoggingKeys.routingKey: "\(LogText.untrusted(event.routingKey))",
                            LoggingKeys.error: "\(LogText.untrusted(error))", LoggingKeys.retryAt: "\(retryAt)",
                        ])
                }
            }
            try await store.markSent(sent)
            published += sent.count
        }
    }

    public func run() async throws {
        wake.yield()  // what is pending already goes first
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                // The poll: a wake-up every interval, merged with those of ``wakeUp()``.
                group.addTask { [wake = self.wake, pollInterval = self.pollInterval] in
                    while !Task.isCancelled {
                        try? await Task.sleep(for: pollInterval)
                        wake.yield()
                    }
                }
                for await _ in self.wakeUps {
                    do {
                        try await self.publishPending()
                    } catch {
                        // The store failed (publish failures are per event, above): the next round tries again.
                        self.bus.logger.warning(
                            "the outbox relay could not read or update its store; trying again",
                            metadata: [LoggingKeys.error: "\(LogText.untrusted(error))"])
                    }
                }
                group.cancelAll()
            }
        }
    }
}
#endif
