import AMQPClient
import AMQPEvents
import Foundation
import Synchronization
import Testing

@Suite("Events: retries, the parking lot, deduplication, the outbox")
struct FailureHandlingTests {
    /// When each call of a handler happened, per order id.
    final class Calls: Sendable {
        private let times = Mutex<[String: [ContinuousClock.Instant]]>([:])

        /// Records a call; returns how many calls the id had before this one.
        func record(_ id: String) -> Int {
            times.withLock { times in
                times[id, default: []].append(.now)
                return times[id]!.count - 1
            }
        }

        func of(_ id: String) -> [ContinuousClock.Instant] { times.withLock { $0[id] ?? [] } }
        var total: Int { times.withLock { $0.values.reduce(0) { $0 + $1.count } } }
    }

    struct Transient: Error {}

    @Test(
        "a 30 % transient failure rate: every event handled exactly once, retried with growing delays, none parked",
        arguments: [EventQueueType.classic, .quorum(deliveryLimit: 20)])
    func transientFailures(queueType: EventQueueType) async throws {
        let total = 60
        try await withEventBus { bus, domain, queues in
            let calls = Calls()
            let handled = Seen()
            let retryCountMismatches = Seen()
            var configured = EventSubscription.publishSubscribe(exchange: domain, service: "email")
                .retrying(.exponential(immediateRetries: 0, first: .milliseconds(100), multiplier: 3, steps: 4, jitter: 0.2))
                .on(Charged.self) { charge, context in
                    // Orders 0, 1, 2 of every 10 fail their first 1, 2 or 3 calls.
                    let failures = charge.amount % 10 < 3 ? 1 + charge.amount % 3 : 0
                    let before = calls.record(charge.orderId)
                    // Without immediate retries, each call is a delayed retry: the header counts them.
                    if context.retryAttempt != before { retryCountMismatches.add(charge.orderId) }
                    if before < failures { throw Transient() }
                    handled.add(charge.orderId)
                }
            if case .quorum(let limit) = queueType { configured = configured.onQuorumQueue(deliveryLimit: limit) }
            let subscription = configured
            queues.withLock { $0.append(contentsOf: [subscription.queue!] + (1...4).map { EventTopology.retryQueue(of: subscription.queue!, step: $0) }) }
            try await bus.declare(subscription)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run(subscription) }
                try await bus.publish((0..<total).map { Charged(orderId: "t-\($0)", amount: $0) }, to: domain)
                try await handled.wait(for: total, within: 30, "every event handled")
                group.cancelAll()
            }
            let failing = (0..<total).filter { $0 % 10 < 3 }
            let gaps = failing.filter { 1 + $0 % 3 == 3 }.map { index -> [Duration] in
                let times = calls.of("t-\(index)")
                return zip(times, times.dropFirst()).map { $0.duration(to: $1) }
            }
            let parked = try await withTestConnection { admin in
                try await admin.openChannel().declareQueue(subscription.parkingLot!, passive: true).messageCount
            }
            print(
                "transient failures (\(queueType)): published \(total), handled \(handled.distinct), duplicated \(handled.duplicates), handler calls \(calls.total), failed calls \(calls.total - total), parked \(parked); gaps of a message that failed 3 times: \(gaps.first ?? [])"
            )
            #expect(handled.distinct == total)
            #expect(handled.duplicates == 0)
            #expect(calls.total == total + failing.map { 1 + $0 % 3 }.reduce(0, +))
            #expect(parked == 0)
            #expect(retryCountMismatches.distinct == 0)
            // 100 ms, 300 ms, 900 ms (±20 %): each retry waits at least its step's delay, so the
            // waits grow (a busy broker may add to any of them, so only the lower bounds are checked).
            let minimums: [Duration] = [.milliseconds(80), .milliseconds(240), .milliseconds(720)]
            for messageGaps in gaps {
                #expect(messageGaps.count == 3)
                for (gap, minimum) in zip(messageGaps, minimums) { #expect(gap >= minimum) }
            }
        }
    }

    @Test("a permanent failure is parked after every attempt, with why; replayed after the fix, it is handled once")
    func permanentFailureAndReplay() async throws {
        try await withEventBus { bus, domain, queues in
            let fixed = Mutex(false)
            let calls = Calls()
            let handled = Seen()
            let subscription = EventSubscription.publishSubscribe(exchange: domain, service: "email")
                .retrying(RetryPolicy(immediateRetries: 1, delays: [.milliseconds(50), .milliseconds(100)]))
                .on(Charged.self) { charge, _ in
                    _ = calls.record(charge.orderId)
                    if charge.orderId == "bad" && !fixed.withLock({ $0 }) { throw Transient() }
                    if charge.orderId == "invalid" { throw DoNotRetry(Transient()) }
                    handled.add(charge.orderId)
                }
            let queue = try #require(subscription.queue)
            queues.withLock { $0.append(contentsOf: [queue] + (1...2).map { EventTopology.retryQueue(of: queue, step: $0) }) }
            try await bus.declare(subscription)
            let bad = try await bus.publish(Charged(orderId: "bad", amount: 1), to: domain)
            try await bus.publish(Charged(orderId: "invalid", amount: 2), to: domain)
            try await bus.publish(Charged(orderId: "good", amount: 3), to: domain)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run(subscription) }
                let parked = try await withTimeout(10, "two parked messages") {
                    while true {
                        let parked = try await bus.parkedMessages(of: queue)
                        if parked.count == 2 { return parked }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                let exhausted = try #require(parked.first { $0.messageID == bad.messageID })
                #expect(exhausted.reason == "retriesExhausted")
                #expect(exhausted.attempts == 6)  // (1 + 1 immediate) × (1 + 2 delayed)
                #expect(exhausted.error?.contains("Transient") == true)
                #expect(exhausted.originalExchange == domain)
                #expect(exhausted.originalRoutingKey == "test.Charged")
                #expect(exhausted.firstFailureAt != nil && exhausted.parkedAt != nil)
                let invalid = try #require(parked.first { $0.messageID != bad.messageID })
                #expect(invalid.reason == "nonRetryable")
                #expect(calls.of("invalid").count == 1)
                #expect(calls.of("bad").count == 6)

                fixed.withLock { $0 = true }
                let moved = try await bus.replayParked(of: queue, messageIDs: [bad.messageID])
                #expect(moved == 1)
                try await handled.wait(for: 2, "the replayed event")
                let left = try await bus.parkedMessages(of: queue)
                #expect(left.map(\.messageID) == [invalid.messageID])
                group.cancelAll()
            }
            print("permanent failure: bad called \(calls.of("bad").count) times, parked, replayed, handled \(handled.distinct) (duplicated \(handled.duplicates))")
            #expect(handled.duplicates == 0)
        }
    }
}
