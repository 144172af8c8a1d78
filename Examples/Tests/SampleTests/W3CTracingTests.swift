import AMQPClient
import Foundation
import SampleSupport
import Synchronization
import Testing
import Tracing
import W3CTraceContext

/// The samples' W3C tracer (`--trace`) against the client, as other clients' OpenTelemetry
/// instrumentations write and read trace context: needs a broker (`$AMQP_URL`).
@Suite("Samples: W3C trace context through the client")
struct W3CTracingTests {
    /// A tracer that keeps the spans it ends.
    static func w3cTracer() -> (W3CTracer, @Sendable () -> [W3CSpan.Finished]) {
        let finished = Mutex<[W3CSpan.Finished]>([])
        let tracer = W3CTracer { span in finished.withLock { $0.append(span) } }
        return (tracer, { finished.withLock { $0 } })
    }

    @Test("a published message carries a W3C traceparent (00-trace-span-flags) naming the producer span")
    func writesW3CTraceparent() async throws {
        let (tracer, spans) = Self.w3cTracer()
        try await withExampleConnection(tracer: tracer) { connection in
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
        try await withExampleConnection(tracer: tracer) { connection in
            let channel = try await connection.openChannel()
            let queue = try await channel.declareQueue("", exclusive: true).name
            // Published by a channel of an untraced connection: only the foreign headers travel.
            try await withExampleConnection { plain in
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
