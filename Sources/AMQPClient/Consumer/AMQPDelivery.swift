/// A message delivered to a consumer or fetched with ``AMQPChannel/get(from:noAck:)``.
///
/// Unless it was consumed with `noAck`, the broker keeps the message until it is
/// settled: call exactly one of ``ack(multiple:)``, ``nack(multiple:requeue:)`` or
/// ``reject(requeue:)`` once it has been handled. A delivery that is never settled
/// is redelivered (with ``redelivered`` set) when its channel closes.
///
/// A class: a delivery passes from the I/O thread through the consumer's buffer to your loop,
/// and one reference is cheaper to hand over than all of its fields.
public final class AMQPDelivery: Sendable {
    /// The message body.
    public let body: [UInt8]
    /// The properties the message was published with: content type, headers, correlation id and the rest.
    public let properties: AMQPProperties
    /// Identifies the delivery on its channel; what ack, nack and reject refer to.
    public let deliveryTag: UInt64
    /// The broker delivered this message before (to this or another consumer) and it was not acknowledged.
    public let redelivered: Bool
    /// The exchange the message was published to (`""` for the default exchange).
    public let exchange: String
    /// The routing key the message was published with.
    public let routingKey: String
    /// The consumer the message was delivered to; `nil` for ``AMQPChannel/get(from:noAck:)``.
    public let consumerTag: String?
    /// The queue the consumer reads; `nil` for ``AMQPChannel/get(from:noAck:)``.
    public let queue: String?
    /// For ``AMQPChannel/get(from:noAck:)``: messages left in the queue after this one.
    public let messageCount: UInt32?
    /// Consumed or fetched with `noAck`: the broker considered it handled when it sent it, and
    /// it must not be settled.
    public let isAutoAcknowledged: Bool

    /// Roughly what ``properties`` hold in memory, for the consumer buffer's limit.
    let propertiesFootprint: Int
    let channel: AMQPChannel
    /// Which incarnation of the channel delivered it (see ``AMQPChannel/generation``).
    let generation: UInt32

    init(
        body: [UInt8], properties: AMQPProperties, deliveryTag: UInt64, redelivered: Bool, exchange: String,
        routingKey: String, consumerTag: String?, queue: String? = nil, messageCount: UInt32?, isAutoAcknowledged: Bool,
        propertiesFootprint: Int = 0, channel: AMQPChannel, generation: UInt32
    ) {
        self.propertiesFootprint = propertiesFootprint
        self.body = body
        self.properties = properties
        self.deliveryTag = deliveryTag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.consumerTag = consumerTag
        self.queue = queue
        self.messageCount = messageCount
        self.isAutoAcknowledged = isAutoAcknowledged
        self.channel = channel
        self.generation = generation
    }

    /// A stream's delivery: its offset in the stream (`x-stream-offset`).
    public var streamOffset: Int64? {
        switch properties.headers?["x-stream-offset"] {
        case .int64(let offset): offset
        case .int32(let offset): Int64(offset)
        case .uint32(let offset): Int64(offset)
        default: nil
        }
    }

    /// The body decoded as UTF-8.
    public var bodyString: String { String(decoding: body, as: UTF8.self) }

    /// Tells the broker the message was handled and may be forgotten.
    ///
    /// After the connection recovered from a loss, settling a delivery received before it does
    /// nothing: the broker has already put the message back and delivers it again.
    /// - Parameter multiple: also acknowledge every earlier unsettled delivery on this channel.
    nonisolated(nonsending) public func ack(multiple: Bool = false) async throws(AMQPError) {
        try settle(.basicAck(deliveryTag: deliveryTag, multiple: multiple))
    }

    /// Tells the broker the message was not handled.
    /// - Parameters:
    ///   - multiple: also settle every earlier unsettled delivery on this channel.
    ///   - requeue: put the message back in its queue (`true`), or drop it or dead-letter it
    ///     (`false`). No default: requeueing a message that always fails loops forever, and dropping
    ///     one from a queue without a dead-letter exchange loses it; say which you mean.
    nonisolated(nonsending) public func nack(multiple: Bool = false, requeue: Bool) async throws(AMQPError) {
        try settle(.basicNack(deliveryTag: deliveryTag, multiple: multiple, requeue: requeue))
    }

    /// Rejects this one message: requeued (`true`), or dropped or dead-lettered (`false`). No
    /// default, as for ``nack(multiple:requeue:)``.
    nonisolated(nonsending) public func reject(requeue: Bool) async throws(AMQPError) {
        try settle(.basicReject(deliveryTag: deliveryTag, requeue: requeue))
    }

    private func settle(_ method: ClientMethod) throws(AMQPError) {
        // Settling an unknown tag would make the broker close the channel (406).
        guard !isAutoAcknowledged else {
            throw .invalidArgument("this delivery came with noAck: the broker already counts it as handled")
        }
        try channel.settle(method, generation: generation)
    }
}
