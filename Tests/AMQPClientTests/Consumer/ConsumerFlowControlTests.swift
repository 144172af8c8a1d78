import Testing

@testable import AMQPClient

/// The twin of the integration tests that flood a slow consumer: reading stops at the limit and
/// goes on at half, and a consumer that ends never holds it up.
@Suite("Consumer: reading pauses while a buffer is full")
struct ConsumerFlowControlTests {
    /// Deliveries with an empty body cost 256 each: a limit of 4 × 256 is crossed by the fifth.
    static func stream(limit: Int = 4 * 256) -> ConsumerStream {
        ConsumerStream(consumerTag: "c", queue: "q", noAck: true, bufferLimit: limit) { _, _ in }
    }

    static func fill(_ stream: ConsumerStream, _ flow: inout ConsumerFlowControl, count: Int, channel: AMQPChannel) -> [Bool] {
        (1...count).map { tag in flow.pushed(to: stream, stream.push(ConsumerStreamTests.delivery(tag, channel))) }
    }

    /// `mayRead` mutates: `#expect` cannot call it on its own.
    func readable(_ flow: inout ConsumerFlowControl) -> Bool { flow.mayRead() }

    @Test("reading stops with the delivery that crosses the limit, not before")
    func stopsAtLimit() throws {
        var flow = ConsumerFlowControl()
        let stream = Self.stream()
        let stops = Self.fill(stream, &flow, count: 5, channel: try ConsumerStreamTests.detachedChannel())
        #expect(stops == [false, false, false, false, true])
        #expect(flow.isPaused)
        #expect(!readable(&flow))
    }

    @Test("reading goes on once the consumer has taken half its buffer")
    func resumesAtHalf() async throws {
        var flow = ConsumerFlowControl()
        let stream = Self.stream()
        _ = Self.fill(stream, &flow, count: 5, channel: try ConsumerStreamTests.detachedChannel())
        _ = try await stream.next()
        _ = try await stream.next()
        #expect(!readable(&flow), "3 of 5 left: still over half")
        _ = try await stream.next()
        #expect(readable(&flow))
        #expect(!flow.isPaused)
    }

    @Test("a consumer that ended (cancelled, its channel closed) no longer holds reading up, drained or not")
    func finishedConsumerReleases() throws {
        var flow = ConsumerFlowControl()
        let stream = Self.stream()
        _ = Self.fill(stream, &flow, count: 5, channel: try ConsumerStreamTests.detachedChannel())
        stream.finish(nil)
        #expect(readable(&flow))
    }

    @Test("two full consumers: reading waits for both")
    func waitsForAll() async throws {
        var flow = ConsumerFlowControl()
        let channel = try ConsumerStreamTests.detachedChannel()
        let first = Self.stream()
        let second = Self.stream()
        _ = Self.fill(first, &flow, count: 5, channel: channel)
        _ = Self.fill(second, &flow, count: 5, channel: channel)
        for _ in 1...3 { _ = try await first.next() }
        #expect(!readable(&flow))
        second.finish(nil)
        #expect(readable(&flow))
    }

    @Test("a lost connection drops the pause with the buffers")
    func resetOnLoss() throws {
        var flow = ConsumerFlowControl()
        _ = Self.fill(Self.stream(), &flow, count: 5, channel: try ConsumerStreamTests.detachedChannel())
        flow.reset()
        #expect(readable(&flow))
    }
}
