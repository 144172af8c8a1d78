import AMQPClient
import AMQPEvents
import Foundation
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// More of the behaviour both transports share: work sharing, graceful shutdown, timeouts, the
/// outbox relay and publish middleware.
extension EventBehaviourTests {
    @Test("competing consumers share a work queue: every event handled once, by either", arguments: Transport.allCases)
    func competingConsumers(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).shared"
            queues.withLock { $0.append(queue) }
            let calls = Calls()
            func worker(_ name: String) -> EventSubscription {
                EventSubscription.workQueue(queue, concurrency: 1, prefetch: 1).on(Charged.self) { event, _ in
                    try await Task.sleep(for: .milliseconds(2))  // busy: the next event goes to the other worker
                    calls.add("\(name) \(event.orderId)")
                }
            }
            try await running(bus, [worker("a"), worker("b")]) {
                try await bus.send((0..<40).map { Charged(orderId: "\($0)", amount: $0) }, toQueue: queue)
                try await calls.wait(for: 40, "40 events")
            }
            let byA = calls.all.filter { $0.hasPrefix("a ") }.count
            print("\(transport): worker a \(byA), worker b \(40 - byA)")
            #expect(Set(calls.all.map { $0.split(separator: " ")[1] }).count == 40, "each event once")
            #expect(calls.all.count == 40)
            #expect(byA > 0 && byA < 40, "both workers took a share")
        }
    }

    @Test(
        "a graceful shutdown lets the handler in flight finish and settle, and gives the prefetched events back",
        arguments: Transport.allCases)
    func gracefulShutdown(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).draining"
            queues.withLock { $0.append(queue) }
            let calls = Calls()
            let (release, released) = AsyncStream<Void>.makeStream()
            let subscription = EventSubscription.workQueue(queue, concurrency: 1, prefetch: 10).on(Charged.self) { event, _ in
                calls.add("started \(event.orderId)")
                for await _ in release {}  // held until the shutdown has begun
                calls.add("finished \(event.orderId)")
            }
            let draining = try await bus.start(subscription)
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await withTimeout(10, "the subscription to drain") { try await draining.run() } }
                    try await bus.send((0..<5).map { Charged(orderId: "\($0)", amount: $0) }, toQueue: queue)
                    try await calls.wait(for: 1, "the first event in its handler")
                    trigger.triggerGracefulShutdown()
                    released.finish()
                    try await group.next()
                }
            }
            #expect(calls.all == ["started 0", "finished 0"], "the handler in flight finished; nothing else started")
            // What comes back: the four not handled, once each, and not the one that was.
            let again = Calls()
            let after = EventSubscription.workQueue(queue).on(Charged.self) { event, context in
                again.add("\(event.orderId)\(context.redelivered ? " redelivered" : "")")
            }
            try await running(bus, [after]) { try await again.wait(for: 4, "the 4 events given back") }
            let counts = (published: 5, handled: calls.all.count / 2, givenBack: again.all.count)
            print("\(transport): graceful shutdown published \(counts.published) handled \(counts.handled) given back \(counts.givenBack) lost 0 duplicated \(again.all.filter { $0.hasPrefix("0") }.count)")
            #expect(again.all.map { String($0.prefix(1)) } == ["1", "2", "3", "4"])
        }
    }

    @Test("a request nobody answers in time fails with timedOut", arguments: Transport.allCases)
    func requestTimeout(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).silent"
            queues.withLock { $0.append(queue) }
            try await bus.declareResponder(queue: queue)  // declared, but no responder runs
            let started = ContinuousClock.now
            let error = await #expect(throws: EventError.self) {
                try await bus.request(Echo(text: "anyone?"), to: queue, timeout: .milliseconds(300))
            }
            let waited = started.duration(to: .now)
            print("\(transport): an unanswered request failed after \(waited)")
            #expect(error?.code == .timedOut)
            #expect(waited >= .milliseconds(300) && waited < .seconds(5))
        }
    }

    @Test("publish middleware: a header it stamps reaches the handler; what it refuses is not published", arguments: Transport.allCases)
    func publishMiddleware(_ transport: Transport) async throws {
        struct StampTenant: PublishMiddleware {
            func publish(_ events: [OutgoingEvent], next: @escaping @Sendable ([OutgoingEvent]) async throws -> Void) async throws {
                guard events.allSatisfy({ $0.metadata.headers["x-refuse"] == nil }) else { throw Flaky() }
                try await next(events.map { var event = $0; event.metadata.headers["x-tenant"] = .string("acme"); return event })
            }
        }
        try await transport.withBus { plain, domain, queues, _ in
            let bus = EventBus(connection: plain.connection, configuration: .init(appID: "stamping", publishMiddleware: [StampTenant()]))
            let queue = "\(domain).tenants"
            queues.withLock { $0.append(queue) }
            let calls = Calls()
            let subscription = EventSubscription.workQueue(queue).on(Charged.self) { event, context in
                let tenant = if case .string(let tenant) = context.metadata.headers["x-tenant"] { tenant } else { "none" }
                calls.add("\(event.orderId) \(tenant)")
            }
            try await running(bus, [subscription]) {
                let refused = await #expect(throws: EventError.self) {
                    try await bus.send(Charged(orderId: "refused", amount: 0), toQueue: queue, headers: ["x-refuse": .bool(true)])
                }
                #expect(refused?.code == .publishFailed)
                try await bus.send(Charged(orderId: "1", amount: 1), toQueue: queue)
                try await bus.send([Charged(orderId: "2", amount: 2), Charged(orderId: "3", amount: 3)], toQueue: queue)
                try await calls.wait(for: 3, "three stamped events")
            }
            await bus.close()
            #expect(calls.all == ["1 acme", "2 acme", "3 acme"])
        }
    }
}
