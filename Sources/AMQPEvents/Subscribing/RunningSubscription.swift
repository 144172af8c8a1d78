import AMQPClient
import ServiceLifecycle

/// A subscription that consumes; ``run()`` handles its events.
public struct RunningSubscription: Sendable {
    let bus: EventBus
    let subscription: EventSubscription
    let channel: AMQPChannel
    let consumer: AMQPConsumer

    /// The queue it consumes (a broadcast subscriber's server-named one, too).
    public var queue: String { consumer.queue }

    /// Handles events until the task is cancelled, a graceful shutdown begins, or the consumer
    /// ends; then closes its channel.
    public func run() async throws(EventError) {
        let (bus, subscription, consumer) = (self.bus, self.subscription, self.consumer)
        let pipeline = bus.pipeline(for: subscription)
        do throws(EventError) {
            try await bus.consumeConcurrently(consumer, concurrency: subscription.concurrency) { delivery in
                await bus.handle(delivery, for: subscription, queue: consumer.queue, pipeline: pipeline)
            }
        } catch {
            await channel.close()
            throw error
        }
        await channel.close()
    }
}

struct SubscriptionService: Service {
    let bus: EventBus
    let subscription: EventSubscription

    func run() async throws {
        try await endingWithItsConnection(bus) { try await bus.run(subscription) }
    }
}
