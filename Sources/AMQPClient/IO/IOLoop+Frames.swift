#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
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
        let heartbeatsDue = heartbeats.isDue(at: now)
        if !fullConsumers.isEmpty && !recovering {
            // A finished consumer (its channel closed, or cancelled) receives nothing more: its
            // buffer no longer holds up the reading, whether the application drains it or not.
            fullConsumers.removeAll { !$0.isOverLimit || $0.isFinished }
            guard fullConsumers.isEmpty else {
                // Not reading, so librabbitmq sends no heartbeats: send them here.
                if heartbeatsDue { sendHeartbeat(at: now) }
                return
            }
        }
        guard socketReadable || heartbeatsDue || connection.hasBufferedInput else { return }
        socketReadable = false
        if heartbeatsDue { heartbeats.serviced(at: now) }
        defer {
            if let metrics = core.metrics { reportMetrics(metrics) }
        }
        for _ in 0..<Self.frameBudget {
            switch connection.nextFrame(timeout: .zero) {
            case .timedOut:
                return
            case .failed(let error):
                lost(error)
                return
            case .frame(let frame):
                lastFrameAt = now
                handle(frame)
                // Lost, closed, or a recovery attempt failed: that connection is gone.
                if self.connection !== connection { return }
                connection.releaseBuffers(channel: frame.channel)
                if !fullConsumers.isEmpty && !recovering { return }  // a consumer's buffer is full: stop reading
            }
            // Read buffer drained: let poll say when more arrives rather than try a recv now.
            if !heartbeatsDue && !connection.hasBufferedInput { return }
        }
    }

    /// While reading is paused for a full consumer buffer.
    private func sendHeartbeat(at now: ContinuousClock.Instant) {
        heartbeats.serviced(at: now)
        guard let connection, heartbeats.seconds > 0 else { return }
        connection.appendHeartbeat()
        flushOutbound()
    }

    /// Hands each consumer that waits its new deliveries: one wake-up per batch of frames, or per
    /// held batch in a steady stream (see ``AMQPConnection/Configuration/DeliveryBatching``).
    /// `immediately` hands everything over, held or not.
    func wakeStreams(immediately: Bool = false) {
        guard !streamsToWake.isEmpty else { return }
        let batching = core.configuration.deliveryBatching
        let now: ContinuousClock.Instant? = batching.isEnabled && !immediately ? .now : nil
        heldBatchDeadline = nil
        streamsToWake.removeAll { entry in
            switch entry.stream.wakeIfDue(at: now, batching: batching, batchLimit: entry.batchLimit) {
            case .done:
                return true
            case .held(let deadline):
                heldBatchDeadline = min(heldBatchDeadline ?? deadline, deadline)
                return false
            }
        }
    }

    /// The largest batch worth holding back for a consumer on `channel` (see
    /// ``AMQPConnection/Configuration/DeliveryBatching/batchLimit(prefetch:)``).
    func batchLimit(for stream: ConsumerStream, on channel: ChannelIO) -> Int {
        let prefetch = stream.noAck ? 0 : channel.prefetch[false] ?? channel.prefetch[true] ?? 0
        return core.configuration.deliveryBatching.batchLimit(prefetch: prefetch)
    }

    // MARK: Frames

    func handle(_ frame: borrowing ReceivedFrame) {
        switch frame.payload {
        case .method(let method):
            handleMethod(method, channel: frame.channel)
        case .header(let header):
            guard let channel = channel(forFrameOn: frame.channel), channel.lifecycle.isOpen else { return }
            // The frame scanner let through only `basic` headers within the maximum message size.
            guard let (properties, footprint) = connection?.properties(of: header), let bodySize = Int(exactly: header.bodySize)
            else {
                lost(.protocolViolation(.syntaxError("a content header the client cannot read")))
                return
            }
            do {
                if let message = try channel.content.header(properties: properties, footprint: footprint, bodySize: bodySize) {
                    completed(message, on: channel)
                }
            } catch {
                lost(.protocolViolation(error))
            }
        case .body(let fragment):
            guard let channel = channel(forFrameOn: frame.channel), channel.lifecycle.isOpen else { return }
            do {
                if let message = try fragment.withUnsafeBytes({ bytes throws(ProtocolViolation) in try channel.content.body(bytes) }) {
                    completed(message, on: channel)
                }
            } catch {
                lost(.protocolViolation(error))
            }
        case .other:
            break
        }
    }

    /// A method that carries content: its header and body frames follow.
    private func startContent(
        _ kind: ContentAssembly.Kind, on channel: ChannelIO, deliveryTag: UInt64, redelivered: Bool, exchange: String,
        routingKey: String
    ) {
        do {
            try channel.content.start(
                kind, deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange, routingKey: routingKey)
        } catch {
            lost(.protocolViolation(error))
        }
    }

    func handleMethod(_ method: ServerMethod, channel id: UInt16) {
        // A reply (or refusal) a recovery step waits for is the recovery's.
        if recovering, let actions = machine.recoveryReply(method, on: id, at: .now) {
            carryOut(actions)
            return
        }
        if id == 0 {
            handleConnectionMethod(method)
            return
        }
        guard let channel = channel(forFrameOn: id) else { return }

        if channel.lifecycle.isClosing {
            // Only the close handshake matters now; deliveries are requeued by the broker.
            switch method {
            case .ok(.channelCloseOk):
                apply(channel.lifecycle.closeOk(), to: channel)
            case .channelClose(let replyCode, let replyText, let classID, let methodID):
                let error = AMQPError.channelClosedByBroker(
                    channel: id, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID)
                apply(channel.lifecycle.brokerClosed(error), to: channel)
            default:
                break
            }
            return
        }

        switch method {
        case .deliver(let consumerTag, let deliveryTag, let redelivered, let exchange, let routingKey):
            startContent(
                .delivery(consumerTag: consumerTag), on: channel, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey)
        case .getOk(let deliveryTag, let redelivered, let exchange, let routingKey, let messageCount):
            guard channel.pendingReplies.oldest(answeredBy: .basicGetOk) != nil else {
                unsolicited(method, on: id)
                return
            }
            startContent(
                .get(messageCount: messageCount), on: channel, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey)
        case .returned(let replyCode, let replyText, let exchange, let routingKey):
            startContent(
                .returned(replyCode: replyCode, replyText: replyText), on: channel, deliveryTag: 0, redelivered: false,
                exchange: exchange, routingKey: routingKey)
        case .channelClose(let replyCode, let replyText, let classID, let methodID):
            let error = AMQPError.channelClosedByBroker(
                channel: id, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID)
            logger.debug("channel closed by the broker", metadata: [LoggingKeys.channel: "\(id)", LoggingKeys.error: .untrusted(error)])
            apply(channel.lifecycle.brokerClosed(error), to: channel)
        case .ok(.channelCloseOk):
            apply(channel.lifecycle.closeOk(), to: channel)
        case .cancel(let consumerTag, let noWait):
            if let stream = channel.removeConsumer(consumerTag) {
                stream.finish(
                    AMQPError(
                        code: .consumerCancelled,
                        message: "the broker cancelled consumer \(consumerTag) (was its queue deleted?)"))
            }
            if !noWait { send(.basicCancelOk(consumerTag: consumerTag), on: id) }
        case .cancelOk(let consumerTag):
            // Taken as the application's own cancel only when it asked for one.
            guard channel.pendingReplies.oldest(answeredBy: .basicCancelOk) != nil else {
                unsolicited(method, on: id)
                return
            }
            if let stream = channel.removeConsumer(consumerTag) {
                stream.finish(nil)
                forgetAutoDeleteQueueIfUnused(stream.queue)
            }
            channel.pendingReplies.resolveNext(method)
        case .ack(let deliveryTag, let multiple):
            healthCounts.confirmsAcked += channel.confirms.confirm(deliveryTag, multiple: multiple, acked: true)
        case .nack(let deliveryTag, let multiple, _):
            healthCounts.confirmsNacked += channel.confirms.confirm(deliveryTag, multiple: multiple, acked: false)
        default:
            if !channel.pendingReplies.resolveNext(method) {
                if method.replyID != nil && method.replyID != .channelFlow {
                    unsolicited(method, on: id)
                } else {
                    logger.debug("unexpected method", metadata: [LoggingKeys.channel: "\(id)", LoggingKeys.method: .untrusted(method)])
                }
            }
        }
    }

    /// A reply to a request the client never made (or made and already had answered): the
    /// broker and the client no longer agree on the conversation, so the connection cannot go
    /// on. Ending a consumer or the connection on it, as if the application had asked, would
    /// skip recovery.
    func unsolicited(_ method: ServerMethod, on channel: UInt16) {
        let name = method.replyID.map { "method \($0)" } ?? "a reply"
        lost(.protocolViolation(.unexpectedFrame("\(name) on channel \(channel) answers no request of the client's")))
    }

    func completed(_ content: consuming ContentAssembly.Completed, on channel: ChannelIO) {
        if content.redelivered { healthCounts.redelivered += 1 }
        switch content.kind {
        case .delivery(let consumerTag):
            guard let record = channel.consumer(tag: consumerTag) else {
                // RabbitMQ may still deliver messages a queue sent before it saw the cancel, even
                // after cancel-ok. Give them back rather than leave them unacknowledged.
                if channel.wasCancelledWithManualAck(consumerTag), !closingConnection {
                    channel.settlements.delivered(content.deliveryTag)
                    settle(.basicReject(deliveryTag: content.deliveryTag, requeue: true), on: channel)
                } else {
                    logger.debug(
                        "delivery for an unknown consumer",
                        metadata: [LoggingKeys.channel: "\(channel.id)", LoggingKeys.consumerTag: .untrusted(consumerTag)])
                }
                return
            }
            let stream = record.stream
            let deliveryTag = content.deliveryTag
            if !stream.noAck { channel.settlements.delivered(deliveryTag) }
            let delivery = content.delivery(
                on: channel, consumerTag: consumerTag, queue: record.restoreSpec?.queue, messageCount: nil,
                autoAcknowledged: stream.noAck)
            if core.metrics != nil { messageCounts.consumed(from: record.restoreSpec?.queue) }
            switch stream.push(delivery) {
            case .accepted: break
            case .acceptedNeedsWake: streamsToWake.append((stream, batchLimit(for: stream, on: channel)))
            case .acceptedOverLimit(let needsWake):
                // Reading stops until the consumer takes half: hand over at once.
                if needsWake { streamsToWake.append((stream, 1)) }
                fullConsumers.append(stream)
                logger.debug(
                    "a consumer's buffer is full; reading paused until it takes half",
                    metadata: [
                        LoggingKeys.channel: "\(channel.id)", LoggingKeys.queue: .untrusted(stream.queue),
                        LoggingKeys.consumerTag: .untrusted(consumerTag),
                    ])
            case .refused:
                if !stream.noAck && !closingConnection {
                    // The application stopped iterating: give the message back at once.
                    settle(.basicReject(deliveryTag: deliveryTag, requeue: true), on: channel)
                }
            }
        case .get(let messageCount):
            let tracked = channel.pendingReplies.oldest(answeredBy: .basicGetOk)?.tracksDelivery == true
            if tracked { channel.settlements.delivered(content.deliveryTag) }
            let delivery = content.delivery(
                on: channel, consumerTag: nil, messageCount: messageCount, autoAcknowledged: !tracked)
            channel.pendingReplies.resolveNext(.gotDelivery(delivery))
        case .returned(let replyCode, let replyText):
            healthCounts.returned += 1
            let error = AMQPError(
                code: .messageReturned,
                message: "the broker returned the message: no queue took it from exchange \"\(content.exchange)\" with routing key \"\(content.routingKey)\"",
                replyCode: replyCode, replyText: replyText)
            if channel.confirms.returned(exchange: content.exchange, routingKey: content.routingKey, error: error) {
                return
            }
            if let suppressed = logLimiter.admit("returned") {
                logger.warning(
                    "the broker returned an unroutable mandatory message",
                    metadata: [
                        LoggingKeys.channel: "\(channel.id)",
                        LoggingKeys.replyCode: "\(replyCode)", LoggingKeys.replyText: .untrusted(replyText),
                        LoggingKeys.exchange: .untrusted(content.exchange),
                        LoggingKeys.routingKey: .untrusted(content.routingKey), LoggingKeys.suppressed: "\(suppressed)",
                    ])
            }
        }
    }

    func handleConnectionMethod(_ method: ServerMethod) {
        switch method {
        case .connectionClose(let replyCode, let replyText, _, _):
            carryOut(machine.brokerClosed(replyCode: replyCode, replyText: replyText, at: .now))
        case .ok(.connectionCloseOk):
            carryOut(machine.closeOk(at: .now))
        case .connectionBlocked(let reason):
            if let suppressed = logLimiter.admit("blocked") {
                logger.warning(
                    "the broker blocked publishing on this connection",
                    metadata: [LoggingKeys.blockedReason: .untrusted(reason), LoggingKeys.suppressed: "\(suppressed)"])
            }
            setBlocked(reason)
        case .connectionUnblocked:
            logger.debug("the broker unblocked publishing on this connection")
            setBlocked(nil)
        default:
            logger.debug("unexpected method on channel 0", metadata: [LoggingKeys.method: .untrusted(method)])
        }
    }
}

extension IOLoop {
    /// The broker deletes an auto-delete queue when its last consumer is cancelled: recovery
    /// must not bring it back.
    func forgetAutoDeleteQueueIfUnused(_ queue: String) {
        guard topology.queue(named: queue)?.autoDelete == true else { return }
        let stillConsumed = channels.values.contains { $0.consumesFrom(queue) }
        if !stillConsumed { topology.forgetQueue(queue) }
    }
}
