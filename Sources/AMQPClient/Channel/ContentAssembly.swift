/// Puts a message back together from its method, content header and body frames.
struct ContentAssembly {
    enum Kind {
        case delivery(consumerTag: String)
        case get(messageCount: UInt32)
        case returned(replyCode: UInt16, replyText: String)
    }

    struct Completed {
        let kind: Kind
        let deliveryTag: UInt64
        let redelivered: Bool
        let exchange: String
        let routingKey: String
        let properties: AMQPProperties
        let body: [UInt8]

        func delivery(
            on channel: ChannelIO, consumerTag: String?, queue: String? = nil, messageCount: UInt32?, autoAcknowledged: Bool
        ) -> AMQPDelivery {
            AMQPDelivery(
                body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey, consumerTag: consumerTag, queue: queue,
                messageCount: messageCount,
                isAutoAcknowledged: autoAcknowledged, channel: channel.handle, generation: channel.generation)
        }
    }

    private struct Started {
        let kind: Kind
        let deliveryTag: UInt64
        let redelivered: Bool
        let exchange: String
        let routingKey: String
        var properties = AMQPProperties()
        /// Set by the content header.
        var bodySize: Int?
        var body: [UInt8] = []
    }

    private var started: Started?

    /// A method that carries content arrived: its header and body frames follow. Another such
    /// method before this message is whole breaks the protocol.
    mutating func start(
        _ kind: Kind, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String
    ) throws(ProtocolViolation) {
        guard started == nil else {
            throw .unexpectedFrame("a method with content arrived before the previous message was whole")
        }
        started = Started(
            kind: kind, deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange, routingKey: routingKey)
    }

    /// The content header: the properties and how large the body is (the frame scanner has
    /// bounded it by the maximum message size).
    mutating func header(properties: AMQPProperties, bodySize: Int) throws(ProtocolViolation) -> Completed? {
        guard started != nil, started!.bodySize == nil else {
            throw .unexpectedFrame("a content header without a method that carries content before it")
        }
        started!.properties = properties
        started!.bodySize = bodySize
        if bodySize == 0 { return complete() }
        return nil
    }

    /// A body frame. Memory grows with what arrives, never with what the header announced.
    mutating func body(_ fragment: UnsafeRawBufferPointer) throws(ProtocolViolation) -> Completed? {
        guard started != nil, let bodySize = started!.bodySize else {
            throw .unexpectedFrame("a body frame without its content header")
        }
        guard fragment.count <= bodySize - started!.body.count else {
            throw .unexpectedFrame("more body than the content header announced (\(bodySize) bytes)")
        }
        if started!.body.isEmpty && fragment.count == bodySize {
            // The common case: the whole body in one frame, copied once.
            started!.body = Array(fragment)
        } else {
            started!.body.append(contentsOf: fragment)
        }
        return started!.body.count == bodySize ? complete() : nil
    }

    private mutating func complete() -> Completed {
        let message = started!
        started = nil
        return Completed(
            kind: message.kind, deliveryTag: message.deliveryTag, redelivered: message.redelivered,
            exchange: message.exchange, routingKey: message.routingKey, properties: message.properties,
            body: message.body)
    }
}
