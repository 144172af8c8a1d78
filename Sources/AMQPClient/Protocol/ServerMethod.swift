/// A method received from the broker, copied out of librabbitmq's frame pool.
enum ServerMethod: Sendable {
    case ok(AMQPMethodID)
    case channelClose(replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16)
    case connectionClose(replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16)
    case connectionBlocked(reason: String)
    case connectionUnblocked
    case queueDeclareOk(AMQPQueueInfo)
    case messageCount(AMQPMethodID, UInt32)
    case consumeOk(consumerTag: String)
    case cancel(consumerTag: String, noWait: Bool)
    case cancelOk(consumerTag: String)
    case deliver(consumerTag: String, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
    case getOk(deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, messageCount: UInt32)
    case getEmpty
    /// A `basic.get-ok` whose content has been assembled.
    case gotDelivery(AMQPDelivery)
    case returned(replyCode: UInt16, replyText: String, exchange: String, routingKey: String)
    case ack(deliveryTag: UInt64, multiple: Bool)
    case nack(deliveryTag: UInt64, multiple: Bool, requeue: Bool)

    /// The method number used to match a reply to the request waiting for it.
    var replyID: AMQPMethodID? {
        switch self {
        case .ok(let id): id
        case .queueDeclareOk: .queueDeclareOk
        case .messageCount(let id, _): id
        case .consumeOk: .basicConsumeOk
        case .cancelOk: .basicCancelOk
        case .getOk: .basicGetOk
        case .getEmpty: .basicGetEmpty
        default: nil
        }
    }
}
