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
}
