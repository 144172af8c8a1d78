import Tracing

extension AMQPDelivery {
    /// How a delivery's processing span relates to the span that published the message.
    public enum ProducerRelation: Sendable {
        /// A new trace, linked to the producer's span (OpenTelemetry's default for messaging:
        /// a message may be processed long after, and by many).
        case link
        /// A child of the producer's span, in the producer's trace.
        case child
    }

    /// Runs `body` in a `process {queue}` span of kind consumer, which continues the trace the
    /// producer put in the message's headers (`traceparent`, written by this package or by any
    /// OpenTelemetry instrumentation). The span ends when `body` returns, and records the error
    /// when it throws. Without a tracer (see ``AMQPConnection/connect(to:logger:tracer:metricsFactory:)``) it
    /// just runs `body`. With metrics, its duration is `messaging.process.duration`.
    ///
    /// ```swift
    /// for try await delivery in consumer {
    ///     try await delivery.withProcessingSpan { delivery in
    ///         try await handle(delivery)
    ///         try await delivery.ack()
    ///     }
    /// }
    /// ```
    nonisolated(nonsending) public func withProcessingSpan<Result>(
        relation: ProducerRelation = .link,
        _ handle: (AMQPDelivery) async throws -> Result
    ) async rethrows -> Result {
        guard let metrics = channel.core.metrics else { return try await traced(relation: relation, handle) }
        let start = ContinuousClock.now
        do {
            let result = try await traced(relation: relation, handle)
            metrics.recordProcess(start.duration(to: .now), error: nil)
            return result
        } catch {
            metrics.recordProcess(start.duration(to: .now), error: error)
            throw error
        }
    }

    nonisolated(nonsending) private func traced<Result>(
        relation: ProducerRelation, _ handle: (AMQPDelivery) async throws -> Result
    ) async rethrows -> Result {
        guard let tracer = channel.core.tracer else { return try await handle(self) }
        let producer = producerContext(tracer)
        let parent = relation == .child ? producer : (ServiceContext.current ?? .topLevel)
        let span = tracer.startSpan(MessagingSpan.name("process", queue), context: parent, ofKind: .consumer)
        defer { span.end() }
        MessagingSpan.setCommon(
            &span.attributes, operation: "process", type: "process", destination: queue ?? exchange,
            endpoint: channel.core.endpoint)
        MessagingSpan.setMessage(&span.attributes, properties: properties, bodySize: body.count, routingKey: routingKey)
        span.attributes[MessagingSpan.Attribute.deliveryTag] = Int(truncatingIfNeeded: deliveryTag)
        if relation == .link { span.addLink(SpanLink(context: producer, attributes: [:])) }
        do {
            return try await ServiceContext.withValue(span.context) { try await handle(self) }
        } catch {
            MessagingSpan.recordFailure(error, on: span)
            throw error
        }
    }

    /// The producer's trace context from the message's headers.
    func producerContext(_ tracer: any Tracer) -> ServiceContext {
        var context = ServiceContext.topLevel
        tracer.extract(properties.headers ?? [:], into: &context, using: MessageHeadersExtractor())
        return context
    }
}
