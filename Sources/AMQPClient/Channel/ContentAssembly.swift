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

        func delivery(on channel: ChannelIO, consumerTag: String?, messageCount: UInt32?, autoAcknowledged: Bool)
            -> AMQPDelivery
        {
            AMQPDelivery(
                body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey, consumerTag: consumerTag, messageCount: messageCount,
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
        var bodySize = 0
        var body: [UInt8] = []
    }

    private var started: Started?

    mutating func start(_ kind: Kind, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String) {
        started = Started(
            kind: kind, deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange, routingKey: routingKey)
    }

    mutating func header(properties: AMQPProperties, bodySize: Int) -> Completed? {
        guard started != nil else { return nil }
        started!.properties = properties
        started!.bodySize = bodySize
        if bodySize == 0 { return complete() }
        return nil
    }

    mutating func body(_ fragment: UnsafeRawBufferPointer) -> Completed? {
        guard started != nil else { return nil }
        if started!.body.isEmpty && fragment.count == started!.bodySize {
            // The common case: the whole body in one frame, copied once.
            started!.body = Array(fragment)
        } else {
            if started!.body.isEmpty { started!.body.reserveCapacity(started!.bodySize) }
            started!.body.append(contentsOf: fragment)
        }
        return started!.body.count >= started!.bodySize ? complete() : nil
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
