/// Puts a message back together from its method, content header and body frames.
///
/// The message is built in place and moved out whole when its last frame arrives: a delivery's
/// properties and strings are never copied along the way.
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
        var properties = AMQPProperties()
        /// Roughly what the properties hold in memory (see ``CDecoding/Conversion``).
        var propertiesFootprint = 0
        var body: [UInt8] = []

        consuming func delivery(
            on channel: ChannelIO, consumerTag: String?, queue: String? = nil, messageCount: UInt32?, autoAcknowledged: Bool
        ) -> AMQPDelivery {
            AMQPDelivery(
                body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey, consumerTag: consumerTag, queue: queue,
                messageCount: messageCount, isAutoAcknowledged: autoAcknowledged,
                propertiesFootprint: propertiesFootprint, channel: channel.handle, generation: channel.generation)
        }
    }

    /// The message being assembled.
    private var message: Completed?
    /// Set by the content header.
    private var bodySize: Int?

    /// A method that carries content arrived: its header and body frames follow. Another such
    /// method before this message is whole breaks the protocol.
    mutating func start(
        _ kind: Kind, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String
    ) throws(ProtocolViolation) {
        guard message == nil else {
            throw .unexpectedFrame("a method with content arrived before the previous message was whole")
        }
        message = Completed(
            kind: kind, deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange, routingKey: routingKey)
        bodySize = nil
    }

    /// The content header: the properties and how large the body is (the frame scanner has
    /// bounded it by the maximum message size).
    mutating func header(properties: consuming AMQPProperties, footprint: Int = 0, bodySize: Int) throws(ProtocolViolation)
        -> Completed?
    {
        guard message != nil, self.bodySize == nil else {
            throw .unexpectedFrame("a content header without a method that carries content before it")
        }
        message!.properties = properties
        message!.propertiesFootprint = footprint
        self.bodySize = bodySize
        return bodySize == 0 ? take() : nil
    }

    /// A body frame. Memory grows with what arrives, never with what the header announced.
    mutating func body(_ fragment: UnsafeRawBufferPointer) throws(ProtocolViolation) -> Completed? {
        guard message != nil, let bodySize else {
            throw .unexpectedFrame("a body frame without its content header")
        }
        let received = message!.body.count
        guard fragment.count <= bodySize - received else {
            throw .unexpectedFrame("more body than the content header announced (\(bodySize) bytes)")
        }
        if received == 0 && fragment.count == bodySize {
            // The common case: the whole body in one frame, copied once.
            message!.body = Array(fragment)
        } else {
            let needed = received + fragment.count
            if message!.body.capacity < needed {
                // Doubling, as an array grows by itself, would end with the last half copied into
                // a buffer twice the size: 1.5× the body at the peak and up to 2× kept. Once a
                // quarter has arrived, the body's full size is reserved at once: 1.25× at most.
                let doubled = max(needed, 2 * message!.body.capacity)
                message!.body.reserveCapacity(needed >= bodySize / 4 ? bodySize : min(doubled, bodySize))
            }
            message!.body.append(contentsOf: fragment)
        }
        return received + fragment.count == bodySize ? take() : nil
    }

    private mutating func take() -> Completed {
        bodySize = nil
        return message.take()!
    }
}
