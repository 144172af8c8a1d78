// What a channel does with what the broker sends it: methods (replies, consumer cancels,
// confirms, the start of a message) and the messages they carry, once whole. Decided here, on
// the channel's own facts, and returned to the I/O thread as actions: the driver writes frames,
// wakes consumers and logs, but decides nothing of the protocol.

extension ChannelIO {
    /// What the I/O thread does after a method arrived on the channel.
    enum Inbound {
        /// Nothing more: a reply resolved its request, a confirm its publishes, a message started.
        case handled
        /// Carry out the channel lifecycle's actions (the broker closed it, or confirmed our close).
        case lifecycle([ChannelStateMachine.Action])
        /// Answer the broker (`basic.cancel-ok` to its `basic.cancel`).
        case send(ClientMethod)
        /// The application's cancel completed: an auto-delete queue may be gone with it.
        case consumerStopped(queue: String)
        /// `basic.ack` or `basic.nack` from the broker resolved this many publishes.
        case confirmed(count: Int, acked: Bool)
        /// The broker broke the protocol (a reply to nothing, a message inside a message): the
        /// connection cannot go on.
        case violation(ProtocolViolation)
        /// A method the client does not act on (logged).
        case ignored
    }

    /// Handles a method that arrived on this channel while it is open.
    func receive(_ method: ServerMethod) -> Inbound {
        switch method {
        case .deliver(let consumerTag, let deliveryTag, let redelivered, let exchange, let routingKey):
            return startContent(
                .delivery(consumerTag: consumerTag), deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange,
                routingKey: routingKey)
        case .getOk(let deliveryTag, let redelivered, let exchange, let routingKey, let messageCount):
            guard pendingReplies.oldest(answeredBy: .basicGetOk) != nil else { return unsolicited(method) }
            return startContent(
                .get(messageCount: messageCount), deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange,
                routingKey: routingKey)
        case .returned(let replyCode, let replyText, let exchange, let routingKey):
            return startContent(
                .returned(replyCode: replyCode, replyText: replyText), deliveryTag: 0, redelivered: false, exchange: exchange,
                routingKey: routingKey)
        case .channelClose(let replyCode, let replyText, let classID, let methodID):
            return .lifecycle(
                lifecycle.brokerClosed(
                    .channelClosedByBroker(channel: id, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID)))
        case .ok(.channelCloseOk):
            return .lifecycle(lifecycle.closeOk())
        case .cancel(let consumerTag, let noWait):
            if let stream = removeConsumer(consumerTag) {
                stream.finish(
                    AMQPError(
                        code: .consumerCancelled, message: "the broker cancelled consumer \(consumerTag) (was its queue deleted?)"))
            }
            return noWait ? .handled : .send(.basicCancelOk(consumerTag: consumerTag))
        case .cancelOk(let consumerTag):
            // Taken as the application's own cancel only when it asked for one.
            guard pendingReplies.oldest(answeredBy: .basicCancelOk) != nil else { return unsolicited(method) }
            let stream = removeConsumer(consumerTag)
            stream?.finish(nil)
            pendingReplies.resolveNext(method)
            return stream.map { .consumerStopped(queue: $0.queue) } ?? .handled
        case .ack(let deliveryTag, let multiple):
            return .confirmed(count: confirms.confirm(deliveryTag, multiple: multiple, acked: true), acked: true)
        case .nack(let deliveryTag, let multiple, _):
            return .confirmed(count: confirms.confirm(deliveryTag, multiple: multiple, acked: false), acked: false)
        default:
            if pendingReplies.resolveNext(method) { return .handled }
            if method.replyID != nil && method.replyID != .channelFlow { return unsolicited(method) }
            return .ignored
        }
    }

    /// A method that carries content: its header and body frames follow.
    private func startContent(
        _ kind: ContentAssembly.Kind, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String
    ) -> Inbound {
        do {
            try content.start(kind, deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange, routingKey: routingKey)
            return .handled
        } catch {
            return .violation(error)
        }
    }

    /// A reply to a request the client never made (or made and already had answered): the
    /// broker and the client no longer agree on the conversation. Ending a consumer or the
    /// connection on it, as if the application had asked, would skip recovery.
    private func unsolicited(_ method: ServerMethod) -> Inbound {
        let name = method.replyID.map { "method \($0)" } ?? "a reply"
        return .violation(.unexpectedFrame("\(name) on channel \(id) answers no request of the client's"))
    }

    // MARK: Whole messages

    /// Where a whole message went.
    enum Routed {
        /// Into a consumer's buffer; `result` says whether to wake its iterator or pause reading.
        case pushed(ConsumerStream, ConsumerStream.PushResult, queue: String?)
        /// Give it back to the broker at once (`basic.reject` with requeue): its consumer stopped.
        case requeue(deliveryTag: UInt64)
        /// For a consumer this channel does not know (and need not give back): dropped, logged.
        case unknownConsumer(String)
        /// It answered the oldest `basic.get`.
        case answeredGet
        /// A `basic.return`: matched to an unconfirmed mandatory publish, or not (then logged).
        case returned(AMQPError, exchange: String, routingKey: String, matchedPublish: Bool)
    }

    /// Hands a whole message to whoever waits for it. `connectionClosing`: nothing is given
    /// back to a broker that is closing the connection anyway (it requeues by itself).
    func route(_ content: consuming ContentAssembly.Completed, connectionClosing: Bool) -> Routed {
        switch content.kind {
        case .delivery(let consumerTag):
            guard let record = consumer(tag: consumerTag) else {
                // RabbitMQ may still deliver messages a queue sent before it saw the cancel, even
                // after cancel-ok. Give them back rather than leave them unacknowledged.
                guard wasCancelledWithManualAck(consumerTag), !connectionClosing else { return .unknownConsumer(consumerTag) }
                settlements.delivered(content.deliveryTag)
                return .requeue(deliveryTag: content.deliveryTag)
            }
            let stream = record.stream
            let deliveryTag = content.deliveryTag
            if !stream.noAck { settlements.delivered(deliveryTag) }
            let queue = record.restoreSpec?.queue
            let delivery = content.delivery(
                on: self, consumerTag: consumerTag, queue: queue, messageCount: nil, autoAcknowledged: stream.noAck)
            let result = stream.push(delivery)
            if result == .refused && !stream.noAck && !connectionClosing {
                // The application stopped iterating: give the message back at once.
                return .requeue(deliveryTag: deliveryTag)
            }
            return .pushed(stream, result, queue: queue)
        case .get(let messageCount):
            let tracked = pendingReplies.oldest(answeredBy: .basicGetOk)?.tracksDelivery == true
            if tracked { settlements.delivered(content.deliveryTag) }
            let delivery = content.delivery(on: self, consumerTag: nil, messageCount: messageCount, autoAcknowledged: !tracked)
            pendingReplies.resolveNext(.gotDelivery(delivery))
            return .answeredGet
        case .returned(let replyCode, let replyText):
            let error = AMQPError(
                code: .messageReturned,
                message:
                    "the broker returned the message: no queue took it from exchange \"\(content.exchange)\" with routing key \"\(content.routingKey)\"",
                replyCode: replyCode, replyText: replyText)
            let matched = confirms.returned(exchange: content.exchange, routingKey: content.routingKey, error: error)
            return .returned(error, exchange: content.exchange, routingKey: content.routingKey, matchedPublish: matched)
        }
    }
}
