import AMQPClient
import InMemoryTracing
import Synchronization
import Testing
import Tracing

/// Spans against the broker with swift-distributed-tracing's `InMemoryTracer`, handed to each
/// connection (no global bootstrap, so suites do not share a tracer).
@Suite("Tracing")
struct TracingTests {
    struct Failure: Error {}

    static func withTracedConnection(
        _ tracer: InMemoryTracer, _ body: (AMQPChannel, String) async throws -> Void
    ) async throws {
        try await withTestConnection(AMQPConnection.connect(to: TestBroker.configuration, tracer: tracer)) { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            try await channel.declareQueue(queue, exclusive: true)
            try await body(channel, queue)
        }
    }

    @Test("a publish is a producer span whose context travels in the headers; processing links to it")
    func publishAndProcess() async throws {
        let tracer = InMemoryTracer()
        try await Self.withTracedConnection(tracer) { channel, queue in
            try await channel.publish(
                "hello", routingKey: queue,
                properties: AMQPProperties(headers: ["app": "kept"], correlationID: "order-7", messageID: "m-1"))
            var iterator = try await channel.consume(queue: queue).makeAsyncIterator()
            let delivery = try #require(try await iterator.next(within: 5))
            #expect(delivery.properties.headers?["app"] == "kept")
            #expect(delivery.properties.headers?[InMemoryTracer.traceIDKey] != nil)
            #expect(delivery.queue == queue)
            try await delivery.withProcessingSpan { delivery in try await delivery.ack() }

            let spans = tracer.finishedSpans
            let publish = try #require(spans.first { $0.operationName == "publish amq.default" })
            #expect(publish.kind == .producer)
            #expect(publish.attributes["messaging.system"]?.toSpanAttribute() == "rabbitmq")
            #expect(publish.attributes["messaging.destination.name"]?.toSpanAttribute() == "amq.default")
            #expect(publish.attributes["messaging.operation.name"]?.toSpanAttribute() == "publish")
            #expect(publish.attributes["messaging.operation.type"]?.toSpanAttribute() == "send")
            #expect(publish.attributes["messaging.rabbitmq.destination.routing_key"]?.toSpanAttribute() == .string(queue))
            #expect(publish.attributes["messaging.message.id"]?.toSpanAttribute() == "m-1")
            #expect(publish.attributes["messaging.message.conversation_id"]?.toSpanAttribute() == "order-7")
            #expect(publish.attributes["messaging.message.body.size"]?.toSpanAttribute() == 5)
            #expect(publish.attributes["server.address"] != nil)
            #expect(publish.attributes["server.port"] != nil)

            let process = try #require(spans.first { $0.operationName == "process \(queue)" })
            #expect(process.kind == .consumer)
            #expect(process.attributes["messaging.destination.name"]?.toSpanAttribute() == .string(queue))
            #expect(process.attributes["messaging.rabbitmq.message.delivery_tag"]?.toSpanAttribute() == 1)
            #expect(process.links.count == 1)
            #expect(process.links.first?.context.inMemorySpanContext?.traceID == publish.traceID)
            #expect(process.traceID != publish.traceID)  // linked, in a trace of its own
        }
    }

    @Test("as a child, processing continues the producer's trace; a failure is recorded on the span")
    func childAndFailure() async throws {
        let tracer = InMemoryTracer()
        try await Self.withTracedConnection(tracer) { channel, queue in
            try await channel.publish("one", routingKey: queue)
            var iterator = try await channel.consume(queue: queue).makeAsyncIterator()
            let delivery = try #require(try await iterator.next(within: 5))
            await #expect(throws: Failure.self) {
                try await delivery.withProcessingSpan(relation: .child) { delivery in
                    try await delivery.reject(requeue: false)
                    throw Failure()
                }
            }
            let spans = tracer.finishedSpans
            let publish = try #require(spans.first { $0.kind == .producer })
            let process = try #require(spans.first { $0.kind == .consumer })
            #expect(process.traceID == publish.traceID)
            #expect(process.parentSpanID == publish.spanID)
            #expect(process.links.isEmpty)
            #expect(process.errors.count == 1)
            #expect(process.attributes["error.type"] != nil)
        }
    }

    @Test("basic.get is a receive span of kind client; a server-named queue stays out of span names")
    func getAndServerNamed() async throws {
        let tracer = InMemoryTracer()
        try await Self.withTracedConnection(tracer) { channel, queue in
            try await channel.publish("polled", routingKey: queue)
            _ = try await channel.waitForMessage(from: queue)
            let receive = try #require(tracer.finishedSpans.first { $0.operationName == "receive \(queue)" && $0.links.count == 1 })
            #expect(receive.kind == .client)

            let unnamed = try await channel.declareQueue("", exclusive: true).name
            try await channel.publish("x", routingKey: unnamed)
            var iterator = try await channel.consume(queue: unnamed, noAck: true).makeAsyncIterator()
            let delivery = try #require(try await iterator.next(within: 5))
            await delivery.withProcessingSpan { _ in }
            #expect(tracer.finishedSpans.contains { $0.operationName == "process" && $0.kind == .consumer })
        }
    }

    @Test("without a tracer nothing is added to the message")
    func untraced() async throws {
        try await withTestConnection { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name
            try await channel.publish("plain", routingKey: queue)
            let delivery = try await channel.waitForMessage(from: queue)
            #expect(delivery.properties.headers == nil)
            #expect(await delivery.withProcessingSpan { _ in 42 } == 42)
        }
    }
}
