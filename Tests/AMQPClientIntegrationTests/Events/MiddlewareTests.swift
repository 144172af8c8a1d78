import AMQPClient
import AMQPEvents
import Synchronization
import Testing

/// Records the middleware calls it sees, in order, under `name`.
struct Recording: EventMiddleware {
    let name: String
    let calls: Calls

    final class Calls: Sendable {
        let log = Mutex<[String]>([])
        func add(_ entry: String) { log.withLock { $0.append(entry) } }
        var entries: [String] { log.withLock { $0 } }
    }

    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        calls.add("\(name) \(event.metadata.type)")
        try await next(event)
    }
}

/// Refuses events without an `x-tenant` header: they are parked at once.
struct RequireTenant: EventMiddleware {
    struct MissingTenant: Error, CustomStringConvertible {
        var description: String { "no x-tenant header" }
    }

    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        guard event.metadata.headers["x-tenant"] != nil else { throw DoNotRetry(MissingTenant()) }
        try await next(event)
    }
}

@Suite("Events: middleware around handlers")
struct MiddlewareTests {
    @Test("the bus's middleware, then the subscription's, run once per delivery around the handler's immediate retries")
    func orderAndRetries() async throws {
        let calls = Recording.Calls()
        let connection = try await TestBroker.connect()
        try await withEventBus(connection: connection) { _, domain, queues in
            let bus = EventBus(
                connection: connection, configuration: .init(appID: "middleware", middleware: [Recording(name: "bus", calls: calls)]))
            let queue = "\(domain).middleware"
            queues.withLock { $0.append(queue) }
            let handled = Seen()
            let subscription = EventSubscription.workQueue(queue)
                .retrying(RetryPolicy(immediateRetries: 2))
                .using(Recording(name: "subscription", calls: calls))
                .on(Charged.self) { task, _ in
                    handled.add(task.orderId)
                    if handled.count(task.orderId) < 3 { throw Flaky() }  // succeeds on the third call
                }
            let running = try await bus.start(subscription)
            let task = Task { try await running.run() }
            defer { task.cancel() }
            try await bus.send(Charged(orderId: "m-1", amount: 1), toQueue: queue)
            try await handled.wait(for: 1, "the handler")
            try await withTimeout(5, "the third call") { while handled.count("m-1") < 3 { try await pollPause() } }
            #expect(calls.entries == ["bus test.Charged", "subscription test.Charged"])
            #expect(handled.count("m-1") == 3)
        }
    }

    @Test("a middleware that refuses an event parks it at once, and the handler never runs")
    func refusal() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).tenant"
            queues.withLock { $0.append(queue) }
            let handled = Seen()
            let subscription = EventSubscription.workQueue(queue).using(RequireTenant()).on(Charged.self) { task, _ in
                handled.add(task.orderId)
            }
            let running = try await bus.start(subscription)
            let task = Task { try await running.run() }
            defer { task.cancel() }
            try await bus.send(Charged(orderId: "no-tenant", amount: 1), toQueue: queue)
            try await bus.send(Charged(orderId: "tenant", amount: 1), toQueue: queue, headers: ["x-tenant": "acme"])
            try await handled.wait(for: 1, "the event with a tenant")
            let parked = try await waitForParked(bus, of: queue)
            #expect(parked.first?.reason == "nonRetryable")
            #expect(parked.first?.error?.contains("no x-tenant header") == true)
            #expect(handled.distinct == 1)
        }
    }

    @Test("a handler that takes longer than its timeout is cancelled, fails with timedOut and is parked, in about the timeout")
    func handlerTimeout() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).slow-handler"
            queues.withLock { $0.append(queue) }
            let subscription = EventSubscription.workQueue(queue).retrying(.none).timeout(.milliseconds(200)).on(Charged.self) { _, _ in
                try await Task.sleep(for: .seconds(30))
            }
            let running = try await bus.start(subscription)
            let task = Task { try await running.run() }
            defer { task.cancel() }
            let start = ContinuousClock.now
            try await bus.send(Charged(orderId: "slow", amount: 1), toQueue: queue)
            let parked = try await waitForParked(bus, of: queue)
            #expect(start.duration(to: .now) < .seconds(5))
            #expect(parked.first?.reason == "retriesExhausted")
            #expect(parked.first?.error?.contains("took longer than") == true)
        }
    }
}

extension MiddlewareTests {
    @Test("a responder runs the bus's middleware around its handler, and its timeout answers the requester with the failure")
    func responderMiddlewareAndTimeout() async throws {
        let calls = Recording.Calls()
        let connection = try await TestBroker.connect()
        try await withEventBus(connection: connection) { requester, domain, queues in
            let bus = EventBus(
                connection: connection, configuration: .init(appID: "responder", middleware: [Recording(name: "bus", calls: calls)]))
            let queue = "\(domain).respond"
            queues.withLock { $0.append(queue) }
            try await bus.declareResponder(queue: queue)
            let responder = Task {
                try await bus.respond(to: queue, with: Echo.self, timeout: .milliseconds(300)) { request, _ in
                    if request.delayMilliseconds > 0 { try await Task.sleep(for: .milliseconds(request.delayMilliseconds)) }
                    return Echoed(text: request.text.uppercased())
                }
            }
            defer { responder.cancel() }
            #expect(try await requester.request(Echo(text: "hi"), to: queue).text == "HI")
            let start = ContinuousClock.now
            let slow = await #expect(throws: EventError.self) {
                try await requester.request(Echo(text: "slow", delayMilliseconds: 10_000), to: queue, timeout: .seconds(5))
            }
            #expect(slow?.code == .responderFailed)
            #expect(slow?.message.contains("took longer than") == true)
            #expect(start.duration(to: .now) < .seconds(4))
            #expect(calls.entries == ["bus test.Echo", "bus test.Echo"])
        }
    }
}

struct Flaky: Error {}
