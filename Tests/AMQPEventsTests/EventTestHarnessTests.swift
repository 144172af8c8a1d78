import AMQPEvents
import AMQPEventsTesting
import Synchronization
import Testing

struct OrderPlacedForHarness: AMQPEvent {
    static let eventType = "test.OrderPlaced"
    var orderId: String
}

struct CardDeclined: Error, CustomStringConvertible {
    var description: String { "card declined" }
}

@Suite("AMQPEventsTesting: a handler's behaviour without RabbitMQ")
struct EventTestHarnessTests {
    @Test("a handler that fails once is retried when the test moves the clock past its delay, and then succeeds")
    func retryOnTheTestsClock() async throws {
        let declines = Mutex(1)
        let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
            .retrying(RetryPolicy(immediateRetries: 0, delays: [.seconds(10)], jitter: 0))
            .on(OrderPlacedForHarness.self) { _, _ in
                if declines.withLock({ count in defer { count -= 1 }; return count > 0 }) { throw CardDeclined() }
            }
        let start = ContinuousClock.now
        try await EventTestHarness.withHarness { harness in
            try await harness.run([payments]) {
                try await harness.bus.publish(OrderPlacedForHarness(orderId: "1"), to: "orders")
                try await harness.waitUntilHandled(1)
                try await harness.advance(by: .seconds(9))
                #expect(harness.handled.count == 1, "the retry waits its 10 s")
                try await harness.advance(by: .seconds(1))
                try await harness.waitUntilHandled(2)
            }
            #expect(harness.handled.map(\.outcome) == [.failed("card declined"), .succeeded])
            #expect(harness.handled.map(\.retryAttempt) == [0, 1])
        }
        #expect(start.duration(to: .now) < .seconds(8), "the 10 s delay took no real 10 s (slack for a machine busy with the whole suite)")
    }

    @Test("an event that fails for good lands in the parking lot, with why")
    func parked() async throws {
        let payments = EventSubscription.workQueue("payments").retrying(.none).on(OrderPlacedForHarness.self) { _, _ in
            throw DoNotRetry(CardDeclined())
        }
        try await EventTestHarness.withHarness { harness in
            try await harness.run([payments]) {
                try await harness.bus.send(OrderPlacedForHarness(orderId: "2"), toQueue: "payments")
                let parked = try await harness.waitUntilParked(1, in: "payments")
                #expect(parked.map(\.reason) == ["nonRetryable"])
                #expect(parked.first?.error == "card declined")
            }
            #expect(harness.handled.map(\.outcome) == [.failed("card declined")])
        }
    }

    @Test("a responder listed in the set-up consumes before the body runs: a request sent at once is answered")
    func responderReadyBeforeBody() async throws {
        // Before responders started with the subscriptions, the body's first request found no
        // queue (noResponder), or waited for a responder that had not started consuming.
        for attempt in 0..<20 {
            try await EventTestHarness.withHarness { harness in
                try await harness.run({ _, parts in
                    parts.respond(to: "ping.\(attempt)", with: Ping.self) { request, _ in Pong(text: request.text.uppercased()) }
                }) {
                    #expect(harness.broker.queueNames.contains("ping.\(attempt)"), "the responder's queue exists when the body starts")
                    let reply = try await harness.bus.request(Ping(text: "hi \(attempt)"), to: "ping.\(attempt)", timeout: .seconds(5))
                    #expect(reply.text == "HI \(attempt)")
                }
            }
        }
    }

    @Test("a wait that times out says where things stand: the failed call and why, what was published, what waits")
    func timeoutReport() async throws {
        let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
            .retrying(RetryPolicy(immediateRetries: 0, delays: [.seconds(10)], jitter: 0))
            .on(OrderPlacedForHarness.self) { _, _ in throw CardDeclined() }
        try await EventTestHarness.withHarness { harness in
            try await harness.run([payments]) {
                try await harness.bus.publish(OrderPlacedForHarness(orderId: "1"), to: "orders")
                try await harness.waitUntilHandled(1)
                let error = await #expect(throws: EventError.self) {
                    try await harness.waitUntil("the payment succeeds", within: .milliseconds(50)) {
                        harness.handled.contains { $0.outcome == .succeeded }
                    }
                }
                let report = try #require(error?.message)
                print("the timeout's report:\n\(report)")
                #expect(error?.code == .timedOut)
                #expect(report.contains("not within 0.05 seconds: the payment succeeds"))
                #expect(report.contains("handler calls (1):\n    test.OrderPlaced from orders.payment: failed: card declined"))
                #expect(report.contains("published: test.OrderPlaced"))
                #expect(report.contains("(1 ready, 0 unacknowledged)"), "the retry waits in its delay queue")
            }
        }
    }

    @Test("a wait's condition may await, and is checked again until it holds")
    func asyncCondition() async throws {
        let checks = Mutex(0)
        try await EventTestHarness.withHarness { harness in
            try await harness.waitUntil("the third check") {
                await Task.yield()
                return checks.withLock { count in
                    count += 1
                    return count == 3
                }
            }
        }
        #expect(checks.withLock { $0 } == 3)
    }
}
