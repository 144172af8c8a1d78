import AMQPClient
import AMQPEvents
import Synchronization
import Testing

/// Where a behaviour test runs: RabbitMQ, or the in-memory broker tests use without one. The
/// same tests run on both, so the in-memory broker cannot drift from RabbitMQ's behaviour.
enum Transport: String, CaseIterable, CustomStringConvertible {
    case rabbitMQ, inMemory

    var description: String { rawValue }

    /// Runs `body` with a bus on this transport and names no other test uses; on RabbitMQ the
    /// queues in `queues` and the domain's exchange are deleted afterwards.
    func withBus(
        _ body: (EventBus, _ domain: String, _ queues: QueuesToDelete, _ broker: InMemoryBroker?) async throws -> Void
    ) async throws {
        switch self {
        case .rabbitMQ:
            try await withEventBus { bus, domain, queues in try await body(bus, domain, queues, nil) }
        case .inMemory:
            let broker = InMemoryBroker()
            let connection = try await AMQPConnection.connect(to: broker)
            let bus = EventBus(connection: connection, configuration: .init(appID: "event-tests", requestTimeout: .seconds(5)))
            do {
                try await body(bus, TestBroker.uniqueName("events"), QueuesToDelete(), broker)
            } catch {
                await connection.close()
                throw error
            }
            await bus.close()
            await connection.close()
        }
    }
}

/// Runs `subscriptions` while `body` runs, then stops them.
func running(_ bus: EventBus, _ subscriptions: [EventSubscription], _ body: () async throws -> Void) async throws {
    var started: [RunningSubscription] = []
    for subscription in subscriptions { started.append(try await bus.start(subscription)) }
    try await withThrowingTaskGroup(of: Void.self) { group in
        for subscription in started { group.addTask { try await subscription.run() } }
        try await body()
        group.cancelAll()
    }
}

final class Calls: Sendable {
    private let entries = Mutex<[String]>([])
    func add(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }

    func wait(for count: Int, _ what: String) async throws {
        try await withTimeout(10, what) { while self.all.count < count { try await pollPause() } }
    }
}

@Suite("Events: one behaviour on RabbitMQ and on the in-memory broker")
struct EventBehaviourTests {
    @Test("events are routed by type to each service that subscribed to it", arguments: Transport.allCases)
    func routingByType(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let payment = Calls()
            let shipping = Calls()
            let payments = EventSubscription.publishSubscribe(exchange: domain, service: "payment")
                .on(Charged.self) { event, _ in payment.add("charged \(event.orderId)") }
            let shippings = EventSubscription.publishSubscribe(exchange: domain, service: "shipping")
                .on(Charged.self) { event, _ in shipping.add("charged \(event.orderId)") }
                .on(Shipped.self) { event, _ in shipping.add("shipped \(event.orderId)") }
            queues.withLock { $0 += [payments.queue!, shippings.queue!] }
            try await running(bus, [payments, shippings]) {
                try await bus.publish(Charged(orderId: "1", amount: 5), to: domain)
                try await bus.publish(Shipped(orderId: "1", carrier: "dhl"), to: domain)
                try await shipping.wait(for: 2, "both events at shipping")
                try await payment.wait(for: 1, "the charge at payment")
            }
            print("\(transport): payment \(payment.all), shipping \(shipping.all)")
            #expect(payment.all == ["charged 1"])
            #expect(shipping.all == ["charged 1", "shipped 1"])
        }
    }

    @Test("at concurrency 1 a queue's events are handled in order", arguments: Transport.allCases)
    func ordering(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).ordered"
            queues.withLock { $0.append(queue) }
            let seen = Calls()
            let subscription = EventSubscription.workQueue(queue).on(Charged.self) { event, _ in seen.add(event.orderId) }
            try await running(bus, [subscription]) {
                try await bus.send((0..<200).map { Charged(orderId: "\($0)", amount: $0) }, toQueue: queue)
                try await seen.wait(for: 200, "200 events")
            }
            #expect(seen.all == (0..<200).map { "\($0)" })
        }
    }

    @Test("a handler that fails once is retried after its delay and then succeeds", arguments: Transport.allCases)
    func delayedRetry(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).retried"
            queues.withLock { $0 += [queue, EventTopology.retryQueue(of: queue, step: 1)] }
            let calls = Calls()
            let subscription = EventSubscription.workQueue(queue)
                .retrying(RetryPolicy(immediateRetries: 0, delays: [.milliseconds(200)], jitter: 0))
                .on(Charged.self) { event, context in
                    calls.add("attempt \(context.retryAttempt)")
                    if context.retryAttempt == 0 { throw Flaky() }
                }
            let start = ContinuousClock.now
            try await running(bus, [subscription]) {
                try await bus.send(Charged(orderId: "r", amount: 1), toQueue: queue)
                try await calls.wait(for: 2, "the retried call")
            }
            print("\(transport): \(calls.all) in \(start.duration(to: .now))")
            #expect(calls.all == ["attempt 0", "attempt 1"])
            #expect(start.duration(to: .now) >= .milliseconds(200))
            #expect(try await bus.parkedMessages(of: queue).isEmpty)
        }
    }

    @Test("what cannot be handled is parked with why, and a replay hands it back", arguments: Transport.allCases)
    func parkingAndReplay(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).poison"
            queues.withLock { $0.append(queue) }
            let calls = Calls()
            let fixed = Mutex(false)
            let subscription = EventSubscription.workQueue(queue).retrying(.none).on(Charged.self) { event, _ in
                calls.add(event.orderId)
                if !fixed.withLock({ $0 }) { throw DoNotRetry(Flaky()) }
            }
            try await running(bus, [subscription]) {
                try await bus.send(Charged(orderId: "p", amount: 1), toQueue: queue)
                let parked = try await waitForParked(bus, of: queue)
                #expect(parked.map(\.reason) == ["nonRetryable"])
                #expect(parked.first?.type == Charged.eventType)
                fixed.withLock { $0 = true }
                #expect(try await bus.replayParked(of: queue) == 1)
                try await calls.wait(for: 2, "the replayed call")
            }
            #expect(calls.all == ["p", "p"])
            #expect(try await bus.parkedMessages(of: queue).isEmpty)
        }
    }

    @Test("a message id is handled once with deduplication", arguments: Transport.allCases)
    func deduplication(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).dedupe"
            queues.withLock { $0.append(queue) }
            let calls = Calls()
            let subscription = EventSubscription.workQueue(queue).deduplicating(with: InMemoryDeduplicationStore())
                .on(Charged.self) { event, _ in calls.add(event.orderId) }
            try await running(bus, [subscription]) {
                for _ in 0..<3 { try await bus.send(Charged(orderId: "same", amount: 1), toQueue: queue, messageID: "m-1") }
                try await bus.send(Charged(orderId: "other", amount: 1), toQueue: queue)
                // In order at concurrency 1: once "other" is handled, the copies before it were settled.
                try await calls.wait(for: 2, "two distinct events")
            }
            #expect(calls.all == ["same", "other"])
        }
    }

    @Test("request/reply: an answer, the responder's failure, and no responder", arguments: Transport.allCases)
    func requestReply(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).echo"
            queues.withLock { $0.append(queue) }
            try await bus.declareResponder(queue: queue)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await bus.respond(to: queue, with: Echo.self) { request, _ in
                        if request.fail { throw RequestReplyTests.EchoRefused() }
                        return Echoed(text: request.text.uppercased())
                    }
                }
                let answer = try await bus.request(Echo(text: "hi"), to: queue)
                #expect(answer.text == "HI")
                let failed = await #expect(throws: EventError.self) { try await bus.request(Echo(text: "x", fail: true), to: queue) }
                #expect(failed?.code == .responderFailed)
                let nobody = await #expect(throws: EventError.self) {
                    try await bus.request(Echo(text: "x"), to: "\(domain).nobody", timeout: .seconds(2))
                }
                #expect(nobody?.code == .noResponder)
                group.cancelAll()
            }
        }
    }
}

