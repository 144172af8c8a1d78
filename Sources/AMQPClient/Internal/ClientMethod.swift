import CRabbitMQ

/// A method the client sends, as plain Swift values. It is turned into librabbitmq's
/// C structs only on the I/O thread, inside ``encode(into:channel:pool:)``.
enum ClientMethod: Sendable {
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
    var replies: [amqp_method_number_t] {
        switch self {
        case .channelOpen: [AMQP_CHANNEL_OPEN_OK_METHOD]
        case .channelClose: [AMQP_CHANNEL_CLOSE_OK_METHOD]
        case .exchangeDeclare: [AMQP_EXCHANGE_DECLARE_OK_METHOD]
        case .exchangeDelete: [AMQP_EXCHANGE_DELETE_OK_METHOD]
        case .exchangeBind: [AMQP_EXCHANGE_BIND_OK_METHOD]
        case .exchangeUnbind: [AMQP_EXCHANGE_UNBIND_OK_METHOD]
        case .queueDeclare: [AMQP_QUEUE_DECLARE_OK_METHOD]
        case .queueBind: [AMQP_QUEUE_BIND_OK_METHOD]
        case .queueUnbind: [AMQP_QUEUE_UNBIND_OK_METHOD]
        case .queuePurge: [AMQP_QUEUE_PURGE_OK_METHOD]
        case .queueDelete: [AMQP_QUEUE_DELETE_OK_METHOD]
        case .basicQos: [AMQP_BASIC_QOS_OK_METHOD]
        case .basicConsume: [AMQP_BASIC_CONSUME_OK_METHOD]
        case .basicCancel: [AMQP_BASIC_CANCEL_OK_METHOD]
        case .basicGet: [AMQP_BASIC_GET_OK_METHOD, AMQP_BASIC_GET_EMPTY_METHOD]
        case .basicRecover: [AMQP_BASIC_RECOVER_OK_METHOD]
        case .confirmSelect: [AMQP_CONFIRM_SELECT_OK_METHOD]
        case .connectionClose: [AMQP_CONNECTION_CLOSE_OK_METHOD]
        case .channelCloseOk, .basicCancelOk, .basicAck, .basicNack, .basicReject, .connectionCloseOk: []
        }
    }

    /// Builds the C struct in `pool` and encodes the method frame into `writer`. Returns
    /// librabbitmq's status.
    func encode(into writer: FrameWriter, channel: amqp_channel_t, pool: CPool) -> Int32 {
        func send<T>(_ id: amqp_method_number_t, _ method: T) -> Int32 {
            var method = method
            return withUnsafeMutablePointer(to: &method) { writer.appendMethod(channel: channel, id: id, decoded: $0) }
        }
        func bool(_ value: Bool) -> amqp_boolean_t { value ? 1 : 0 }
        let empty = amqp_bytes_t(len: 0, bytes: nil)

        switch self {
        case .channelOpen:
            return send(AMQP_CHANNEL_OPEN_METHOD, amqp_channel_open_t(out_of_band: empty))
        case .channelClose(let code, let text):
            return send(
                AMQP_CHANNEL_CLOSE_METHOD,
                amqp_channel_close_t(reply_code: code, reply_text: pool.bytes(text), class_id: 0, method_id: 0))
        case .channelCloseOk:
            return send(AMQP_CHANNEL_CLOSE_OK_METHOD, amqp_channel_close_ok_t(dummy: 0))
        case .exchangeDeclare(let name, let type, let passive, let durable, let autoDelete, let isInternal, let arguments):
            return send(
                AMQP_EXCHANGE_DECLARE_METHOD,
                amqp_exchange_declare_t(
                    ticket: 0, exchange: pool.bytes(name), type: pool.bytes(type), passive: bool(passive),
                    durable: bool(durable), auto_delete: bool(autoDelete), internal: bool(isInternal), nowait: 0,
                    arguments: pool.table(arguments)))
        case .exchangeDelete(let name, let ifUnused):
            return send(
                AMQP_EXCHANGE_DELETE_METHOD,
                amqp_exchange_delete_t(ticket: 0, exchange: pool.bytes(name), if_unused: bool(ifUnused), nowait: 0))
        case .exchangeBind(let destination, let source, let routingKey, let arguments):
            return send(
                AMQP_EXCHANGE_BIND_METHOD,
                amqp_exchange_bind_t(
                    ticket: 0, destination: pool.bytes(destination), source: pool.bytes(source),
                    routing_key: pool.bytes(routingKey), nowait: 0, arguments: pool.table(arguments)))
        case .exchangeUnbind(let destination, let source, let routingKey, let arguments):
            return send(
                AMQP_EXCHANGE_UNBIND_METHOD,
                amqp_exchange_unbind_t(
                    ticket: 0, destination: pool.bytes(destination), source: pool.bytes(source),
                    routing_key: pool.bytes(routingKey), nowait: 0, arguments: pool.table(arguments)))
        case .queueDeclare(let name, let passive, let durable, let exclusive, let autoDelete, let arguments):
            return send(
                AMQP_QUEUE_DECLARE_METHOD,
                amqp_queue_declare_t(
                    ticket: 0, queue: pool.bytes(name), passive: bool(passive), durable: bool(durable),
                    exclusive: bool(exclusive), auto_delete: bool(autoDelete), nowait: 0,
                    arguments: pool.table(arguments)))
        case .queueBind(let queue, let exchange, let routingKey, let arguments):
            return send(
                AMQP_QUEUE_BIND_METHOD,
                amqp_queue_bind_t(
                    ticket: 0, queue: pool.bytes(queue), exchange: pool.bytes(exchange),
                    routing_key: pool.bytes(routingKey), nowait: 0, arguments: pool.table(arguments)))
        case .queueUnbind(let queue, let exchange, let routingKey, let arguments):
            return send(
                AMQP_QUEUE_UNBIND_METHOD,
                amqp_queue_unbind_t(
                    ticket: 0, queue: pool.bytes(queue), exchange: pool.bytes(exchange),
                    routing_key: pool.bytes(routingKey), arguments: pool.table(arguments)))
        case .queuePurge(let name):
            return send(AMQP_QUEUE_PURGE_METHOD, amqp_queue_purge_t(ticket: 0, queue: pool.bytes(name), nowait: 0))
        case .queueDelete(let name, let ifUnused, let ifEmpty):
            return send(
                AMQP_QUEUE_DELETE_METHOD,
                amqp_queue_delete_t(
                    ticket: 0, queue: pool.bytes(name), if_unused: bool(ifUnused), if_empty: bool(ifEmpty), nowait: 0))
        case .basicQos(let prefetchCount, let global):
            return send(
                AMQP_BASIC_QOS_METHOD,
                amqp_basic_qos_t(prefetch_size: 0, prefetch_count: prefetchCount, global: bool(global)))
        case .basicConsume(let queue, let consumerTag, let noAck, let exclusive, let arguments):
            return send(
                AMQP_BASIC_CONSUME_METHOD,
                amqp_basic_consume_t(
                    ticket: 0, queue: pool.bytes(queue), consumer_tag: pool.bytes(consumerTag), no_local: 0,
                    no_ack: bool(noAck), exclusive: bool(exclusive), nowait: 0, arguments: pool.table(arguments)))
        case .basicCancel(let consumerTag):
            return send(AMQP_BASIC_CANCEL_METHOD, amqp_basic_cancel_t(consumer_tag: pool.bytes(consumerTag), nowait: 0))
        case .basicCancelOk(let consumerTag):
            return send(AMQP_BASIC_CANCEL_OK_METHOD, amqp_basic_cancel_ok_t(consumer_tag: pool.bytes(consumerTag)))
        case .basicGet(let queue, let noAck):
            return send(AMQP_BASIC_GET_METHOD, amqp_basic_get_t(ticket: 0, queue: pool.bytes(queue), no_ack: bool(noAck)))
        case .basicAck(let deliveryTag, let multiple):
            return send(AMQP_BASIC_ACK_METHOD, amqp_basic_ack_t(delivery_tag: deliveryTag, multiple: bool(multiple)))
        case .basicNack(let deliveryTag, let multiple, let requeue):
            return send(
                AMQP_BASIC_NACK_METHOD,
                amqp_basic_nack_t(delivery_tag: deliveryTag, multiple: bool(multiple), requeue: bool(requeue)))
        case .basicReject(let deliveryTag, let requeue):
            return send(AMQP_BASIC_REJECT_METHOD, amqp_basic_reject_t(delivery_tag: deliveryTag, requeue: bool(requeue)))
        case .basicRecover(let requeue):
            return send(AMQP_BASIC_RECOVER_METHOD, amqp_basic_recover_t(requeue: bool(requeue)))
        case .confirmSelect:
            return send(AMQP_CONFIRM_SELECT_METHOD, amqp_confirm_select_t(nowait: 0))
        case .connectionClose(let code, let text):
            return send(
                AMQP_CONNECTION_CLOSE_METHOD,
                amqp_connection_close_t(reply_code: code, reply_text: pool.bytes(text), class_id: 0, method_id: 0))
        case .connectionCloseOk:
            return send(AMQP_CONNECTION_CLOSE_OK_METHOD, amqp_connection_close_ok_t(dummy: 0))
        }
    }
}
