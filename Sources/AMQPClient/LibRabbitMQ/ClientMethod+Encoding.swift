import CRabbitMQ

extension ClientMethod {
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
