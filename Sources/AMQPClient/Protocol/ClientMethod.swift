/// A method the client sends, as plain Swift values. It is turned into librabbitmq's
/// C structs only on the I/O thread, by ``FrameWriter/append(_:channel:)``.
enum ClientMethod: Sendable, Equatable {
    case channelOpen
    case channelClose(replyCode: UInt16, replyText: String)
    case channelCloseOk
    case exchangeDeclare(
        name: String, type: String, passive: Bool, durable: Bool, autoDelete: Bool, isInternal: Bool,
        arguments: AMQPFieldTable)
    case exchangeDelete(name: String, ifUnused: Bool)
    case exchangeBind(destination: String, source: String, routingKey: String, arguments: AMQPFieldTable)
    case exchangeUnbind(destination: String, source: String, routingKey: String, arguments: AMQPFieldTable)
    case queueDeclare(
        name: String, passive: Bool, durable: Bool, exclusive: Bool, autoDelete: Bool, arguments: AMQPFieldTable)
    case queueBind(queue: String, exchange: String, routingKey: String, arguments: AMQPFieldTable)
    case queueUnbind(queue: String, exchange: String, routingKey: String, arguments: AMQPFieldTable)
    case queuePurge(name: String)
    case queueDelete(name: String, ifUnused: Bool, ifEmpty: Bool)
    case basicQos(prefetchCount: UInt16, global: Bool)
    case basicConsume(queue: String, consumerTag: String, noAck: Bool, exclusive: Bool, arguments: AMQPFieldTable)
    case basicCancel(consumerTag: String)
    case basicCancelOk(consumerTag: String)
    case basicGet(queue: String, noAck: Bool)
    case basicAck(deliveryTag: UInt64, multiple: Bool)
    case basicNack(deliveryTag: UInt64, multiple: Bool, requeue: Bool)
    case basicReject(deliveryTag: UInt64, requeue: Bool)
    case basicRecover(requeue: Bool)
    case confirmSelect
    case connectionClose(replyCode: UInt16, replyText: String)
    case connectionCloseOk

    /// The replies that complete this method, or `[]` when it is asynchronous.
    var replies: [AMQPMethodID] {
        switch self {
        case .channelOpen: [.channelOpenOk]
        case .channelClose: [.channelCloseOk]
        case .exchangeDeclare: [.exchangeDeclareOk]
        case .exchangeDelete: [.exchangeDeleteOk]
        case .exchangeBind: [.exchangeBindOk]
        case .exchangeUnbind: [.exchangeUnbindOk]
        case .queueDeclare: [.queueDeclareOk]
        case .queueBind: [.queueBindOk]
        case .queueUnbind: [.queueUnbindOk]
        case .queuePurge: [.queuePurgeOk]
        case .queueDelete: [.queueDeleteOk]
        case .basicQos: [.basicQosOk]
        case .basicConsume: [.basicConsumeOk]
        case .basicCancel: [.basicCancelOk]
        case .basicGet: [.basicGetOk, .basicGetEmpty]
        case .basicRecover: [.basicRecoverOk]
        case .confirmSelect: [.confirmSelectOk]
        case .connectionClose: [.connectionCloseOk]
        case .channelCloseOk, .basicCancelOk, .basicAck, .basicNack, .basicReject, .connectionCloseOk: []
        }
    }
}
