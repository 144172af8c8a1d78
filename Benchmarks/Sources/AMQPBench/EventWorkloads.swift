import AMQPClient
import AMQPEvents
import CRawAMQPBench
import Foundation
import Histogram
import Synchronization

/// The event layer's workloads, each against raw C doing the same with librabbitmq: publishing a
/// small event with the lossless defaults, handling events, and a request/reply round trip.
struct BenchEvent: AMQPEvent {
    static let eventType = "BenchOrderPlaced"
    var orderId: String
    var userId: String
    var amount: Int
}

struct BenchRequest: AMQPRequest {
    typealias Response = BenchReply
    static let eventType = "BenchFindDriver"
    var orderId: String
}

struct BenchReply: AMQPEvent {
    static let eventType = "BenchDriverAssigned"
    var orderId: String
    var driver: String
}

extension Bench {
    struct EventWorkload {
        var name: String
        var messages: Int
        let sdk: @Sendable (EventBus, String) async throws -> Void
        let rawC: @Sendable (RawConnection, String) -> Int32
        /// Events put in the queue (untimed) before both sides run.
        let prefill: Int
    }

    /// The JSON the SDK writes for a typical event, which raw C publishes as is.
    static let eventJSON: [UInt8] = Array(#"{"orderId":"123456","userId":"456","amount":100}"#.utf8)

    func eventWorkloads(messages n: Int) -> [EventWorkload] {
        var workloads: [EventWorkload] = []
        let batch = 1000
        workloads.append(
            EventWorkload(
                name: "event-publish", messages: n,
                sdk: { bus, queue in
                    // The lossless defaults (confirms, persistent, mandatory), as a producer that wants
                    // throughput uses them: batches of 500, two in flight (raw C keeps 1000 unconfirmed).
                    let batches = stride(from: 0, to: n, by: batch / 2).map { $0..<min($0 + batch / 2, n) }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for (index, range) in batches.enumerated() {
                            if index >= 2 { try await group.next() }
                            group.addTask {
                                try await bus.send(range.map { BenchEvent(orderId: "\($0)", userId: "456", amount: 100) }, toQueue: queue)
                            }
                        }
                        try await group.waitForAll()
                    }
                },
                rawC: { connection, queue in
                    Self.eventJSON.withUnsafeBytes { body in
                        raw_bench_publish_events(
                            connection.pointer, queue, body.baseAddress, body.count, BenchEvent.eventType, UInt64(n),
                            UInt32(batch))
                    }
                },
                prefill: 0))
        // At the defaults, and with a user middleware that only calls on (the pipeline's cost).
        for (concurrency, withMiddleware) in [(1, false), (16, false), (1, true)] {
            workloads.append(
                EventWorkload(
                    name: "event-handle-concurrency\(concurrency)" + (withMiddleware ? "-middleware" : ""), messages: n,
                    sdk: { bus, queue in
                        let handled = Countdown(n)
                        var subscription = EventSubscription.workQueue(queue, concurrency: concurrency)
                        if withMiddleware { subscription = subscription.using(PassThrough()) }
                        subscription = subscription.on(BenchEvent.self) { _, _ in handled.countDown() }
                        let running = try await bus.start(subscription)
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask { try await running.run() }
                            await handled.wait()
                            group.cancelAll()
                            try await group.waitForAll()
                        }
                    },
                    rawC: { connection, queue in
                        // The same prefetch as the subscription's default: the same round trips.
                        let prefetch = EventSubscription.defaultPrefetch(concurrency: concurrency)
                        return raw_bench_consume(connection.pointer, queue, prefetch, 1, UInt64(n))
                    },
                    prefill: n))
        }
        return workloads
    }

    func runEventWorkloads(round: Int, admin: AMQPChannel, into report: inout Report) async throws {
        let sdkFirst = round % 2 == 0
        for workload in eventWorkloads(messages: options.messages) where included(workload.name) {
            var results: [Bool: Usage] = [:]
            for isSDK in sides(sdkFirst: sdkFirst) {
                // A durable queue with the event layer's arguments, as `send(_:toQueue:)` declares it.
                let queue = "amqp-bench.\(workload.name)"
                try await admin.declareQueue(queue, durable: true, arguments: EventTopology.queueArguments(queue))
                if workload.prefill > 0 { try await prefillEvents(queue, workload.prefill) }
                results[isSDK] = try await isSDK ? runEventsSDK(workload, queue) : runEventsRawC(workload, queue)
                try await admin.deleteQueue(queue)
                try await admin.deleteQueue(EventTopology.parkingLot(of: queue))
                try await Task.sleep(for: .milliseconds(300))
            }
            record(workload.name, messages: workload.messages, results, round: round, into: &report)
        }
        let name = "event-request-reply"
        guard included(name) else { return }
        var sdk: Histogram<UInt64>?
        var rawC: Histogram<UInt64>?
        for isSDK in sides(sdkFirst: sdkFirst) {
            let queue = "amqp-bench.request-reply"
            try await admin.declareQueue(queue, durable: true)
            try await admin.purgeQueue(queue)
            if isSDK { sdk = try await requestReplySDK(queue) } else { rawC = try await requestReplyRawC(queue) }
            try await admin.deleteQueue(queue)
        }
        recordLatency(name, sdk: sdk, rawC: rawC, percentiles: [50, 99], round: round, into: &report)
    }

    private func runEventsSDK(_ workload: EventWorkload, _ queue: String) async throws -> Usage {
        let connection = try await AMQPConnection.connect(to: configuration, metricsFactory: metricsFactory)
        let bus = EventBus(connection: connection, configuration: .init(appID: "amqp-bench"))
        let usage = try await Usage.measure { try await workload.sdk(bus, queue) }
        await connection.close()
        return usage
    }

    private func runEventsRawC(_ workload: EventWorkload, _ queue: String) async throws -> Usage {
        let connection = try openRawC()
        defer { raw_bench_close(connection.pointer) }
        let run = workload.rawC
        var status: Int32 = 0
        let usage = await Usage.measure { status = await onOwnThread { run(connection, queue) } }
        guard status == 0 else { throw BenchError("raw C \(workload.name) failed") }
        return usage
    }

    /// Fills a queue with events (as raw C publishes them: decodable by the SDK), untimed.
    private func prefillEvents(_ queue: String, _ count: Int) async throws {
        let connection = try openRawC()
        defer { raw_bench_close(connection.pointer) }
        let status = await onOwnThread {
            Self.eventJSON.withUnsafeBytes { body in
                raw_bench_publish_events(
                    connection.pointer, queue, body.baseAddress, body.count, BenchEvent.eventType, UInt64(count), 1000)
            }
        }
        guard status == 0 else { throw BenchError("event prefill failed") }
    }

    /// Requests one at a time from a responder on another connection of the same process.
    private func requestReplySDK(_ queue: String) async throws -> Histogram<UInt64> {
        let requester = try await AMQPConnection.connect(to: configuration)
        let responder = try await AMQPConnection.connect(to: configuration)
        defer { Task { await requester.close(); await responder.close() } }
        let requests = EventBus(connection: requester)
        let answers = EventBus(connection: responder)
        let count = options.latencyMessages
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await answers.respond(to: queue, with: BenchRequest.self) { request, _ in
                    BenchReply(orderId: request.orderId, driver: "Ana")
                }
            }
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
            let clock = ContinuousClock()
            _ = try await requests.request(BenchRequest(orderId: "warm-up"), to: queue)
            for index in 0..<count {
                let start = clock.now
                _ = try await requests.request(BenchRequest(orderId: "\(index)"), to: queue)
                _ = histogram.record(UInt64((clock.now - start).seconds * 1e9))
            }
            group.cancelAll()
            return histogram
        }
    }

    private func requestReplyRawC(_ queue: String) async throws -> Histogram<UInt64> {
        let requester = try openRawC()
        let responder = try openRawC()
        defer {
            raw_bench_close(requester.pointer)
            raw_bench_close(responder.pointer)
        }
        let count = options.latencyMessages
        let body: [UInt8] = Array(#"{"orderId":"123456"}"#.utf8)
        let latencies = await onOwnThread { () -> [UInt64]? in
            var latencies = [UInt64](repeating: 0, count: count)
            let status = body.withUnsafeBytes { bytes in
                raw_bench_request_reply(
                    requester.pointer, responder.pointer, queue, bytes.baseAddress, bytes.count, UInt64(count), &latencies)
            }
            return status == 0 ? latencies : nil
        }
        guard let latencies else { throw BenchError("raw C request/reply failed") }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for latency in latencies { _ = histogram.record(latency) }
        return histogram
    }
}

/// Counts handled events down to zero; `wait()` returns once it got there.
final class Countdown: Sendable {
    private let state: Mutex<(left: Int, waiter: CheckedContinuation<Void, Never>?)>

    init(_ count: Int) { state = Mutex((count, nil)) }

    func countDown() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.left -= 1
            guard state.left == 0 else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.left <= 0 { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
    }
}

/// A middleware that only calls on: what the pipeline itself costs.
struct PassThrough: EventMiddleware {
    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        try await next(event)
    }
}
