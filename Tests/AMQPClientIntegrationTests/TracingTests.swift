import AMQPClient
import InMemoryTracing
import SampleSupport
import Synchronization
import Testing
import Tracing
import W3CTraceContext

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

    // MARK: W3C trace context, as other clients' OpenTelemetry instrumentations write it

    /// A tracer that keeps the spans it ends.
    static func w3cTracer() -> (W3CTracer, @Sendable () -> [W3CSpan.Finished]) {
        let finished = Mutex<[W3CSpan.Finished]>([])
        let tracer = W3CTracer { span in finished.withLock { $0.append(span) } }
        return (tracer, { finished.withLock { $0 } })
    }

    @Test("a published message carries a W3C traceparent (00-trace-span-flags) naming the producer span")
    func writesW3CTraceparent() async throws {
        let (tracer, spans) = Self.w3cTracer()
        try await withTestConnection(AMQPConnection.connect(to: TestBroker.configuration, tracer: tracer)) { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name
            try await channel.publish("traced", routingKey: queue)
            let delivery = try await channel.waitForMessage(from: queue)
            guard case .string(let traceparent) = delivery.properties.headers?["traceparent"] else {
                Issue.record("no traceparent long string in \(String(describing: delivery.properties.headers))")
                return
            }
            print("traceparent written: \(traceparent)")
            // The format Python's and Java's OpenTelemetry propagators parse.
            #expect(traceparent.wholeMatch(of: /00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]/) != nil)
            let parsed = try TraceContext(traceParentHeaderValue: traceparent)
            let publish = try #require(spans().first { $0.operationName == "publish amq.default" })
            #expect(parsed.traceID == publish.trace.traceID)
            #expect(parsed.spanID == publish.trace.spanID)
        }
    }

    @Test("a traceparent and tracestate written by another client are continued (child) or linked")
    func readsForeignTraceparent() async throws {
        // As opentelemetry-python's and -java's AMQP instrumentations write them: long strings.
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let spanID = "00f067aa0ba902b7"
        let headers: AMQPFieldTable = ["traceparent": .string("00-\(traceID)-\(spanID)-01"), "tracestate": "congo=t61rcWkgMzE"]
        let (tracer, spans) = Self.w3cTracer()
        try await withTestConnection(AMQPConnection.connect(to: TestBroker.configuration, tracer: tracer)) { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name
            // Published by a channel of an untraced connection: only the foreign headers travel.
            try await withTestConnection { plain in
                let publisher = try await plain.openChannel()
                for _ in 0..<2 { try await publisher.publish("from python", routingKey: queue, properties: AMQPProperties(headers: headers)) }
            }
            let child = try await channel.waitForMessage(from: queue)
            let continued = await child.withProcessingSpan(relation: .child) { _ in ServiceContext.current?.w3cTraceContext }
            #expect(continued?.traceID.description == traceID)
            #expect(continued?.traceStateHeaderValue == "congo=t61rcWkgMzE")
            let linked = try await channel.waitForMessage(from: queue)
            await linked.withProcessingSpan(relation: .link) { _ in }

            let processSpans = spans().filter { $0.kind == .consumer }
            #expect(processSpans.count == 2)
            let childSpan = try #require(processSpans.first)
            #expect(childSpan.trace.traceID.description == traceID)
            #expect(childSpan.parentSpanID?.description == spanID)
            let linkSpan = try #require(processSpans.last)
            #expect(linkSpan.trace.traceID.description != traceID)
            #expect(linkSpan.links.map { "\($0.traceID)/\($0.spanID)" } == ["\(traceID)/\(spanID)"])
        }
    }
}
