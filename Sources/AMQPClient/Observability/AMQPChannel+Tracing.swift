import Tracing

extension AMQPChannel {
    /// A publish in a `publish {exchange}` span of kind producer, whose context travels in the
    /// message's headers (the application's headers are kept).
    func publishTraced(
        _ tracer: any Tracer, _ body: [UInt8], exchange: String, routingKey: String, mandatory: Bool,
        properties: AMQPProperties
    ) async throws(AMQPError) -> AMQPPublishConfirmation {
        let destination = MessagingSpan.exchangeName(exchange)
        let span = tracer.startSpan(
            MessagingSpan.name("publish", destination), context: ServiceContext.current ?? .topLevel, ofKind: .producer)
        defer { span.end() }
        MessagingSpan.setCommon(
            &span.attributes, operation: "publish", type: "send", destination: destination, endpoint: core.endpoint)
        MessagingSpan.setMessage(&span.attributes, properties: properties, bodySize: body.count, routingKey: routingKey)
        var properties = properties
        var headers = properties.headers ?? [:]
        tracer.inject(span.context, into: &headers, using: MessageHeadersInjector())
        properties.headers = headers
        do {
            return try await send(body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
        } catch {
            MessagingSpan.recordFailure(error, on: span)
            throw error
        }
    }

    /// A `basic.get` in a `receive {queue}` span of kind client.
    func getTraced(_ tracer: any Tracer, from queue: String, noAck: Bool) async throws(AMQPError) -> AMQPDelivery? {
        let span = tracer.startSpan(
            MessagingSpan.name("receive", queue), context: ServiceContext.current ?? .topLevel, ofKind: .client)
        defer { span.end() }
        MessagingSpan.setCommon(
            &span.attributes, operation: "receive", type: "receive", destination: queue, endpoint: core.endpoint)
        do {
            let delivery = try await getUntraced(from: queue, noAck: noAck)
            if let delivery {
                MessagingSpan.setMessage(
                    &span.attributes, properties: delivery.properties, bodySize: delivery.body.count,
                    routingKey: delivery.routingKey)
                span.attributes[MessagingSpan.Attribute.deliveryTag] = Int(truncatingIfNeeded: delivery.deliveryTag)
                // The producer's context, as a link: a receive is not part of the producer's trace.
                span.addLink(SpanLink(context: delivery.producerContext(tracer), attributes: [:]))
            }
            return delivery
        } catch {
            MessagingSpan.recordFailure(error, on: span)
            throw error
        }
    }
}
