import Tracing

/// OpenTelemetry's messaging conventions (semantic conventions 1.44) for RabbitMQ spans.
enum MessagingSpan {
    enum Attribute {
        static let system = "messaging.system"
        static let destinationName = "messaging.destination.name"
        static let operationName = "messaging.operation.name"
        static let operationType = "messaging.operation.type"
        static let routingKey = "messaging.rabbitmq.destination.routing_key"
        static let deliveryTag = "messaging.rabbitmq.message.delivery_tag"
        static let messageID = "messaging.message.id"
        static let conversationID = "messaging.message.conversation_id"
        static let bodySize = "messaging.message.body.size"
        static let serverAddress = "server.address"
        static let serverPort = "server.port"
        static let errorType = "error.type"
    }

    /// RabbitMQ's name for the default exchange, which has none on the wire.
    static func exchangeName(_ exchange: String) -> String {
        exchange.isEmpty ? "amq.default" : exchange
    }

    /// `{operation} {destination}`, without a destination that is temporary or server-named.
    static func name(_ operation: String, _ destination: String?) -> String {
        guard let destination, !destination.isEmpty, !destination.hasPrefix("amq.gen-") else { return operation }
        return "\(operation) \(destination)"
    }

    /// The attributes every span of the client carries.
    static func setCommon(
        _ attributes: inout SpanAttributes, operation: String, type: String, destination: String,
        endpoint: AMQPConnection.Configuration.Endpoint?
    ) {
        attributes[Attribute.system] = "rabbitmq"
        attributes[Attribute.operationName] = operation
        attributes[Attribute.operationType] = type
        attributes[Attribute.destinationName] = destination
        if let endpoint {
            attributes[Attribute.serverAddress] = endpoint.host
            attributes[Attribute.serverPort] = endpoint.port
        }
    }

    /// The message's own attributes.
    static func setMessage(_ attributes: inout SpanAttributes, properties: AMQPProperties, bodySize: Int, routingKey: String) {
        attributes[Attribute.routingKey] = routingKey
        attributes[Attribute.bodySize] = bodySize
        if let id = properties.messageID { attributes[Attribute.messageID] = id }
        if let correlation = properties.correlationID { attributes[Attribute.conversationID] = correlation }
    }

    /// Records a failure: the error, and its code as `error.type`.
    static func recordFailure(_ error: any Error, on span: any Span) {
        span.recordError(error)
        span.attributes[Attribute.errorType] = MessagingMetrics.errorType(error)
    }
}
