import CRabbitMQ

extension ServerMethod {
    /// Copies a method librabbitmq decoded out of its frame pool. The consumer tags, exchanges
    /// and routing keys of deliveries, gets and returns reuse recent equal strings.
    init(_ method: amqp_method_t, reusing strings: inout RepeatedStrings) {
        let id = method.id
        let decoded = method.decoded
        func load<T>(_ type: T.Type) -> T { decoded!.load(as: T.self) }
        let s: (amqp_bytes_t) -> String = CDecoding.string
        func repeated(_ bytes: amqp_bytes_t) -> String { CDecoding.string(bytes, reusing: &strings) }
        switch id {
        case AMQP_BASIC_DELIVER_METHOD:
            let m = load(amqp_basic_deliver_t.self)
            self = .deliver(
                consumerTag: repeated(m.consumer_tag), deliveryTag: m.delivery_tag, redelivered: m.redelivered != 0,
                exchange: repeated(m.exchange), routingKey: repeated(m.routing_key))
        case AMQP_BASIC_ACK_METHOD:
            let m = load(amqp_basic_ack_t.self)
            self = .ack(deliveryTag: m.delivery_tag, multiple: m.multiple != 0)
        case AMQP_BASIC_NACK_METHOD:
            let m = load(amqp_basic_nack_t.self)
            self = .nack(deliveryTag: m.delivery_tag, multiple: m.multiple != 0, requeue: m.requeue != 0)
        case AMQP_BASIC_GET_OK_METHOD:
            let m = load(amqp_basic_get_ok_t.self)
            self = .getOk(
                deliveryTag: m.delivery_tag, redelivered: m.redelivered != 0, exchange: repeated(m.exchange),
                routingKey: repeated(m.routing_key), messageCount: m.message_count)
        case AMQP_BASIC_GET_EMPTY_METHOD:
            self = .getEmpty
        case AMQP_BASIC_RETURN_METHOD:
            let m = load(amqp_basic_return_t.self)
            self = .returned(
                replyCode: m.reply_code, replyText: s(m.reply_text), exchange: repeated(m.exchange),
                routingKey: repeated(m.routing_key))
        case AMQP_CHANNEL_CLOSE_METHOD:
            let m = load(amqp_channel_close_t.self)
            self = .channelClose(
                replyCode: m.reply_code, replyText: s(m.reply_text), classID: m.class_id, methodID: m.method_id)
        case AMQP_CONNECTION_CLOSE_METHOD:
            let m = load(amqp_connection_close_t.self)
            self = .connectionClose(
                replyCode: m.reply_code, replyText: s(m.reply_text), classID: m.class_id, methodID: m.method_id)
        case AMQP_CONNECTION_BLOCKED_METHOD:
            self = .connectionBlocked(reason: s(load(amqp_connection_blocked_t.self).reason))
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            self = .connectionUnblocked
        case AMQP_QUEUE_DECLARE_OK_METHOD:
            let m = load(amqp_queue_declare_ok_t.self)
            self = .queueDeclareOk(
                AMQPQueueInfo(name: s(m.queue), messageCount: m.message_count, consumerCount: m.consumer_count))
        case AMQP_QUEUE_PURGE_OK_METHOD:
            self = .messageCount(AMQPMethodID(rawValue: id), load(amqp_queue_purge_ok_t.self).message_count)
        case AMQP_QUEUE_DELETE_OK_METHOD:
            self = .messageCount(AMQPMethodID(rawValue: id), load(amqp_queue_delete_ok_t.self).message_count)
        case AMQP_BASIC_CONSUME_OK_METHOD:
            self = .consumeOk(consumerTag: s(load(amqp_basic_consume_ok_t.self).consumer_tag))
        case AMQP_BASIC_CANCEL_METHOD:
            let m = load(amqp_basic_cancel_t.self)
            self = .cancel(consumerTag: s(m.consumer_tag), noWait: m.nowait != 0)
        case AMQP_BASIC_CANCEL_OK_METHOD:
            self = .cancelOk(consumerTag: s(load(amqp_basic_cancel_ok_t.self).consumer_tag))
        default:
            self = .ok(AMQPMethodID(rawValue: id))
        }
    }
}
