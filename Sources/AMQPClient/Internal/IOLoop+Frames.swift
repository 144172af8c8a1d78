#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ
import DequeModule
import Logging

// Reading frames: replies, deliveries, confirms, returns, and closes sent by the broker.

extension IOLoop {
    /// Reads and handles the frames that are ready. It calls into librabbitmq only when there is
    /// something to read (buffered, or the socket polled readable) or when heartbeats are due:
    /// a call with nothing to read costs two system calls for nothing.
    func readFrames() {
        guard let connection else { return }
        let now = ContinuousClock.now
        let heartbeatsDue = now >= nextHeartbeatService
        guard socketReadable || heartbeatsDue || amqp_data_in_buffer(connection) != 0
            || amqp_frames_enqueued(connection) != 0
        else { return }
        socketReadable = false
        if heartbeatsDue { nextHeartbeatService = now + heartbeatServiceInterval }
        defer { wakeStreams() }
        var frame = amqp_frame_t()
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        for _ in 0..<Self.frameBudget {
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return }
            guard status == AMQP_STATUS_OK.rawValue else {
                connectionLost(status)
                return
            }
            handle(frame)
            if finished || recovering { return }
            amqp_maybe_release_buffers_on_channel(connection, frame.channel)
            // Read buffer drained: let poll say when more arrives rather than try a recv now.
            if !heartbeatsDue && amqp_data_in_buffer(connection) == 0 && amqp_frames_enqueued(connection) == 0 { return }
        }
    }

    // MARK: Frames

    func handle(_ frame: amqp_frame_t) {
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            handleMethod(ServerMethod(frame.payload.method), channel: frame.channel)
        case AMQP_FRAME_HEADER:
            guard let channel = channels[frame.channel], channel.state == .open else { return }
            let header = frame.payload.properties
            let properties = CDecoding.properties(header.decoded!.load(as: amqp_basic_properties_t.self))
            if let delivery = channel.content.header(properties: properties, bodySize: Int(header.body_size)) {
                completed(delivery, on: channel)
            }
        case AMQP_FRAME_BODY:
            guard let channel = channels[frame.channel], channel.state == .open else { return }
            let fragment = frame.payload.body_fragment
            if let delivery = channel.content.body(UnsafeRawBufferPointer(start: fragment.bytes, count: fragment.len)) {
                completed(delivery, on: channel)
            }
        default:
            break
        }
    }

    func handleMethod(_ method: ServerMethod, channel id: UInt16) {
        if id == 0 {
            handleConnectionMethod(method)
            return
        }
        guard let channel = channels[id] else { return }

        if channel.state == .closing {
            // Only the close handshake matters now; deliveries are requeued by the broker.
            switch method {
            case .ok(AMQP_CHANNEL_CLOSE_OK_METHOD):
                channels[id] = nil
                channel.finish(consumersWith: nil, pendingWith: nil)
            case .channelClose:
                send(.channelCloseOk, on: id)
            default:
                break
            }
            return
        }

        switch method {
        case .deliver(let consumerTag, let deliveryTag, let redelivered, let exchange, let routingKey):
            channel.content.start(
                .delivery(consumerTag: consumerTag), deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey)
        case .getOk(let deliveryTag, let redelivered, let exchange, let routingKey, let messageCount):
            channel.content.start(
                .get(messageCount: messageCount), deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey)
        case .returned(let replyCode, let replyText, let exchange, let routingKey):
            channel.content.start(
                .returned(replyCode: replyCode, replyText: replyText), deliveryTag: 0, redelivered: false,
                exchange: exchange, routingKey: routingKey)
        case .channelClose(let replyCode, let replyText, let classID, let methodID):
            send(.channelCloseOk, on: id)
            channels[id] = nil
            let error = AMQPError.channelClosedByBroker(
                channel: id, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID)
            logger.debug("channel closed by the broker", metadata: ["amqp.channel": "\(id)", "amqp.error": "\(error)"])
            channel.handle.markClosed(error)
            closeReasons[id] = (channel.epoch, error)
            channel.finish(consumersWith: error, pendingWith: error)
        case .cancel(let consumerTag, let noWait):
            channel.consumerSpecs[consumerTag] = nil
            if let stream = channel.consumers.removeValue(forKey: consumerTag) {
                channel.retire(stream)
                stream.finish(
                    AMQPError(
                        code: .consumerCancelled,
                        message: "the broker cancelled consumer \(consumerTag) (was its queue deleted?)"))
            }
            if !noWait { send(.basicCancelOk(consumerTag: consumerTag), on: id) }
        case .cancelOk(let consumerTag):
            if let stream = channel.consumers.removeValue(forKey: consumerTag) {
                channel.retire(stream)
                stream.finish(nil)
                forgetAutoDeleteQueueIfUnused(stream.queue)
            }
            channel.resolveNext(method)
        case .ack(let deliveryTag, let multiple):
            channel.confirm(deliveryTag, multiple: multiple, acked: true)
        case .nack(let deliveryTag, let multiple, _):
            channel.confirm(deliveryTag, multiple: multiple, acked: false)
        default:
            if !channel.resolveNext(method) {
                logger.debug("unexpected method", metadata: ["amqp.channel": "\(id)", "amqp.method": "\(method)"])
            }
        }
    }

    func completed(_ content: ContentAssembly.Completed, on channel: ChannelIO) {
        switch content.kind {
        case .delivery(let consumerTag):
            guard let stream = channel.consumers[consumerTag] else {
                // RabbitMQ may still deliver messages a queue sent before it saw the cancel, even
                // after cancel-ok. Give them back rather than leave them unacknowledged.
                if channel.wasCancelledWithManualAck(consumerTag), !closingConnection {
                    channel.unsettled.delivered(content.deliveryTag)
                    settleAndSend(.basicReject(deliveryTag: content.deliveryTag, requeue: true), on: channel)
                } else {
                    logger.debug("delivery for an unknown consumer", metadata: ["amqp.consumer_tag": "\(consumerTag)"])
                }
                return
            }
            if !stream.noAck { channel.unsettled.delivered(content.deliveryTag) }
            let delivery = content.delivery(
                on: channel, consumerTag: consumerTag, messageCount: nil, autoAcknowledged: stream.noAck)
            switch stream.push(delivery) {
            case .accepted: break
            case .acceptedNeedsWake: streamsToWake.append(stream)
            case .refused:
                if !stream.noAck && !closingConnection {
                    // The application stopped iterating: give the message back at once.
                    settleAndSend(.basicReject(deliveryTag: content.deliveryTag, requeue: true), on: channel)
                }
            }
        case .get(let messageCount):
            let tracked = channel.oldestPending(answeredBy: AMQP_BASIC_GET_OK_METHOD).map { channel.pending[$0].tracksDelivery }
            if tracked == true { channel.unsettled.delivered(content.deliveryTag) }
            let delivery = content.delivery(
                on: channel, consumerTag: nil, messageCount: messageCount, autoAcknowledged: tracked != true)
            channel.resolveNext(.gotDelivery(delivery))
        case .returned(let replyCode, let replyText):
            let error = AMQPError(
                code: .messageReturned,
                message: "the broker returned the message: no queue took it from exchange \"\(content.exchange)\" with routing key \"\(content.routingKey)\"",
                replyCode: replyCode, replyText: replyText)
            if channel.confirmMode,
                channel.returned(exchange: content.exchange, routingKey: content.routingKey, error: error)
            {
                return
            }
            logger.warning(
                "the broker returned an unroutable mandatory message",
                metadata: [
                    "amqp.reply_code": "\(replyCode)", "amqp.reply_text": "\(replyText)",
                    "amqp.exchange": "\(content.exchange)", "amqp.routing_key": "\(content.routingKey)",
                ])
        }
    }

    func handleConnectionMethod(_ method: ServerMethod) {
        switch method {
        case .connectionClose(let replyCode, let replyText, _, _):
            send(.connectionCloseOk, on: 0)
            flushOutbound()
            let error = AMQPError(
                code: replyCode == 403 ? .accessRefused : .connectionClosed,
                message: "the broker closed the connection", replyCode: replyCode, replyText: replyText)
            if closingConnection {
                tearDown(error, byApplication: true)
            } else {
                lost(error)
            }
        case .ok(AMQP_CONNECTION_CLOSE_OK_METHOD):
            tearDown(.connectionClosedByApplication, byApplication: true)
        case .connectionBlocked(let reason):
            logger.warning("the broker blocked publishing on this connection", metadata: ["amqp.reason": "\(reason)"])
            blocked = true
            core.setBlocked(reason)
        case .connectionUnblocked:
            logger.info("the broker unblocked publishing on this connection")
            blocked = false
            core.setBlocked(nil)
        default:
            logger.debug("unexpected method on channel 0", metadata: ["amqp.method": "\(method)"])
        }
    }
}

extension IOLoop {
    /// The broker deletes an auto-delete queue when its last consumer is cancelled: recovery
    /// must not bring it back.
    func forgetAutoDeleteQueueIfUnused(_ queue: String) {
        guard topology.queue(named: queue)?.autoDelete == true else { return }
        let stillConsumed = channels.values.contains { channel in
            channel.consumerSpecs.values.contains { $0.queue == queue }
        }
        if !stillConsumed { topology.forgetQueue(queue) }
    }
}

extension AMQPError {
    static func channelClosedByBroker(
        channel: UInt16, replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16
    ) -> AMQPError {
        var message = "the broker closed channel \(channel)"
        if classID != 0 || methodID != 0 {
            if let name = amqp_method_name(amqp_method_number_t(UInt32(classID) << 16 | UInt32(methodID))) {
                message += " after \(String(cString: name))"
            }
        }
        return AMQPError(
            code: replyCode == 403 ? .accessRefused : .channelClosed, message: message, replyCode: replyCode,
            replyText: replyText)
    }
}
