import Synchronization
import Testing

@testable import AMQPClient

@Suite("Consumer buffering")
struct ConsumerStreamTests {
    @Test("the buffer hands out deliveries in order, then ends with the finishing error")
    func orderThenError() async throws {
        let stream = ConsumerStream(consumerTag: "t", queue: "q", noAck: false) { _, _ in }
        let channel = try Self.detachedChannel()
        for tag in 1...3 { #expect(stream.push(Self.delivery(tag, channel)) == .accepted) }
        stream.finish(AMQPError(code: .consumerCancelled, message: "gone"))
        for tag in 1...3 { #expect(try await stream.next()?.deliveryTag == UInt64(tag)) }
        await #expect(throws: AMQPError.self) { try await stream.next() }
    }

    @Test("a waiting iterator is resumed by a push and the I/O thread's wake, as the I/O thread does it")
    func waiterResumed() async throws {
        let stream = ConsumerStream(consumerTag: "t", queue: "q", noAck: false) { _, _ in }
        let channel = try Self.detachedChannel()
        async let next = stream.next()
        // Bounded: the iterator registers as a waiter once its task runs.
        let deadline = ContinuousClock.now + .seconds(5)
        while !stream.hasWaiter {
            try #require(ContinuousClock.now < deadline, "the iterator did not start waiting within 5 s")
            await Task.yield()
        }
        // A push to a waiting iterator asks for a wake; the I/O thread hands the delivery over.
        #expect(stream.push(Self.delivery(1, channel)) == .acceptedNeedsWake)
        #expect(stream.push(Self.delivery(2, channel)) == .accepted)  // one wake per batch
        #expect(stream.wakeIfDue(at: nil, batching: .init(), batchLimit: 1) == .done)
        #expect(try await next?.deliveryTag == 1)
        #expect(try await stream.next()?.deliveryTag == 2)
    }

    @Test("terminating returns the unseen deliveries and refuses later ones")
    func terminate() throws {
        let stream = ConsumerStream(consumerTag: "t", queue: "q", noAck: false) { _, _ in }
        let channel = try Self.detachedChannel()
        _ = stream.push(Self.delivery(1, channel))
        _ = stream.push(Self.delivery(2, channel))
        #expect(stream.terminate()?.map(\.deliveryTag) == [1, 2])
        #expect(stream.terminate() == nil)
        #expect(stream.push(Self.delivery(3, channel)) == .refused)
    }

    @Test("once finished, the buffer refuses new deliveries (the broker gets them back) and still hands out what it held")
    func finishedRefuses() async throws {
        let stream = ConsumerStream(consumerTag: "t", queue: "q", noAck: false) { _, _ in }
        let channel = try Self.detachedChannel()
        #expect(stream.push(Self.delivery(1, channel)) == .accepted)
        stream.finish(nil)
        #expect(stream.push(Self.delivery(2, channel)) == .refused)
        #expect(try await stream.next()?.deliveryTag == 1)
        #expect(try await stream.next() == nil)
    }

    @Test("cancelling the iterating task ends the sequence")
    func cancellation() async throws {
        let stream = ConsumerStream(consumerTag: "t", queue: "q", noAck: false) { _, _ in }
        let task = Task { try await stream.next() }
        task.cancel()
        #expect(try await task.value == nil)
        #expect(stream.terminate() == nil)
    }

    @Test("past its limit the buffer says so once, and calls back when the iterator has taken half")
    func bufferLimit() async throws {
        let drained = Counter()
        // Deliveries with an empty body cost 256 each: the limit is crossed by the fifth.
        let stream = ConsumerStream(
            consumerTag: "t", queue: "q", noAck: true, bufferLimit: 4 * 256, onDrained: { drained.increment() }
        ) { _, _ in }
        let channel = try Self.detachedChannel()
        for tag in 1...4 { #expect(stream.push(Self.delivery(tag, channel)) == .accepted) }
        #expect(stream.push(Self.delivery(5, channel)) == .acceptedOverLimit(needsWake: false))
        #expect(stream.push(Self.delivery(6, channel)) == .accepted)  // said once
        #expect(stream.isOverLimit)
        for _ in 1...3 { _ = try await stream.next() }
        #expect(drained.value == 0)  // 3 × 256 left: more than half
        _ = try await stream.next()
        #expect(drained.value == 1)
        #expect(!stream.isOverLimit)
        _ = try await stream.next()
        #expect(drained.value == 1)
    }

    @Test("in a steady stream a batch is held until it is large or old; a lone delivery, or the first after a pause, at once")
    func deliveryBatching() async throws {
        let stream = ConsumerStream(consumerTag: "t", queue: "q", noAck: true) { _, _ in }
        let channel = try Self.detachedChannel()
        let batching = AMQPConnection.Configuration.DeliveryBatching(
            maximumDelay: .seconds(10), maximumCount: 4, flowingBatch: 2)
        #expect(batching.batchLimit(prefetch: 0) == 4)
        #expect(batching.batchLimit(prefetch: 8) == 2)
        let received = Received()
        let iterating = Task {
            while let delivery = try await stream.next() { received.append(delivery.deliveryTag) }
        }
        defer { iterating.cancel() }
        let start = ContinuousClock.now
        var tag = 0
        /// Pushes `count` deliveries once the iterator waits; returns what the first push said.
        func pushWhenWaiting(_ count: Int) async throws -> ConsumerStream.PushResult {
            try await Self.waitUntil { stream.hasWaiter }
            var first: ConsumerStream.PushResult?
            for _ in 0..<count {
                tag += 1
                let result = stream.push(Self.delivery(tag, channel))
                first = first ?? result
            }
            return first!
        }

        func wake(at now: ContinuousClock.Instant?, batchLimit: Int = 4) -> ConsumerStream.WakeOutcome {
            stream.wakeIfDue(at: now, batching: batching, batchLimit: batchLimit)
        }
        /// Pushes `count` once the iterator waits, expects them handed over at once, and waits until the
        /// iterator has them.
        func handedOverAtOnce(_ count: Int, at now: ContinuousClock.Instant?, batchLimit: Int = 4) async throws {
            _ = try await pushWhenWaiting(count)
            #expect(wake(at: now, batchLimit: batchLimit) == .done)
            try await Self.waitUntil { received.count == tag }
        }

        // A lone delivery: the last hand-off carried none, nothing is held.
        #expect(try await pushWhenWaiting(1) == .acceptedNeedsWake)
        #expect(wake(at: start) == .done)
        try await Self.waitUntil { received.count == 1 }
        // Two at once: handed over together, which makes the stream count as steady.
        try await handedOverAtOnce(2, at: start)

        // Steady, and the next batch begins soon after: held while under the batch limit and its delay…
        _ = try await pushWhenWaiting(1)
        let deadline = start + .seconds(11)
        #expect(wake(at: start + .seconds(1)) == .held(until: deadline))
        for _ in 0..<2 { tag += 1; #expect(stream.push(Self.delivery(tag, channel)) == .accepted) }
        #expect(wake(at: start + .seconds(2)) == .held(until: deadline))
        #expect(received.count == 3)
        // …handed over once the batch limit is reached.
        tag += 1
        _ = stream.push(Self.delivery(tag, channel))
        #expect(wake(at: start + .seconds(2)) == .done)
        try await Self.waitUntil { received.count == 7 }

        // Held, then handed over when its delay has passed.
        _ = try await pushWhenWaiting(1)
        #expect(wake(at: start + .seconds(3)) == .held(until: start + .seconds(13)))
        #expect(wake(at: start + .seconds(13)) == .done)
        try await Self.waitUntil { received.count == 8 }
        try await handedOverAtOnce(2, at: start + .seconds(13))
        // The first delivery after a pause (over four times the delay since the last hand-off): at once.
        try await handedOverAtOnce(1, at: start + .seconds(60))
        // A batch limit no larger than what marks a steady stream (a small prefetch): at once.
        try await handedOverAtOnce(2, at: start + .seconds(60))
        try await handedOverAtOnce(1, at: start + .seconds(60), batchLimit: 2)
        // Without a time (batching off, or a recovery), at once.
        try await handedOverAtOnce(3, at: nil)
        #expect(received.tags == Array(1...17).map(UInt64.init))
    }

    /// Waits, yielding, until `condition` holds; fails after 5 seconds.
    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting")
                throw CancellationError()
            }
            await Task.yield()
        }
    }

    final class Received: Sendable {
        private let values = Mutex<[UInt64]>([])
        func append(_ tag: UInt64) { values.withLock { $0.append(tag) } }
        var count: Int { values.withLock { $0.count } }
        var tags: [UInt64] { values.withLock { $0 } }
    }

    final class Counter: Sendable {
        private let count = Mutex(0)
        func increment() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    static func detachedChannel() throws -> AMQPChannel {
        let core = try ConnectionCore(configuration: .init(), logger: .init(label: "test"))
        return AMQPChannel(core: core, ref: ChannelRef(id: 1, epoch: 1))
    }

    static func delivery(_ tag: Int, _ channel: AMQPChannel) -> AMQPDelivery {
        AMQPDelivery(
            body: [], properties: .init(), deliveryTag: UInt64(tag), redelivered: false, exchange: "", routingKey: "q",
            consumerTag: "t", messageCount: nil, isAutoAcknowledged: false, channel: channel, generation: 0)
    }
}
