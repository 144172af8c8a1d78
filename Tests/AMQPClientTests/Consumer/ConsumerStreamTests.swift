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

    @Test("a waiting iterator is resumed by a push")
    func waiterResumed() async throws {
        let stream = ConsumerStream(consumerTag: "t", queue: "q", noAck: false) { _, _ in }
        let channel = try Self.detachedChannel()
        async let next = stream.next()
        // Push until the waiter has taken one (it may register after the first push).
        var pushed = 0
        repeat {
            pushed += 1
            _ = stream.push(Self.delivery(pushed, channel))
            await Task.yield()
        } while pushed < 2
        #expect(try await next?.deliveryTag == 1)
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
