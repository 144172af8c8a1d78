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
        // While restoring, recovery's replies must be read whatever the consumers hold.
        if !recovering && !flowControl.mayRead() {
            // Not reading, so librabbitmq sends no heartbeats: send them here.
            if heartbeatsDue { sendHeartbeat(at: now) }
            return
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
                if flowControl.isPaused && !recovering { return }  // a consumer's buffer is full: stop reading
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

        if channel.lifecycle.isClosing, let actions = channel.lifecycle.receivedWhileClosing(method) {
            apply(actions, to: channel)
            return
        }

        switch channel.receive(method) {
        case .handled:
            break
        case .lifecycle(let actions):
            if case .channelClose = method {
                logger.debug("channel closed by the broker", metadata: [LoggingKeys.channel: "\(id)", LoggingKeys.method: .untrusted(method)])
            }
            apply(actions, to: channel)
        case .send(let reply):
            send(reply, on: id)
        case .consumerStopped(let queue):
            forgetAutoDeleteQueueIfUnused(queue)
        case .confirmed(let count, let acked):
            if acked { healthCounts.confirmsAcked += count } else { healthCounts.confirmsNacked += count }
        case .violation(let violation):
            lost(.protocolViolation(violation))
        case .ignored:
            logger.debug("unexpected method", metadata: [LoggingKeys.channel: "\(id)", LoggingKeys.method: .untrusted(method)])
        }
    }

    func completed(_ content: consuming ContentAssembly.Completed, on channel: ChannelIO) {
        if content.redelivered { healthCounts.redelivered += 1 }
        switch channel.route(content, connectionClosing: closingConnection) {
        case .pushed(let stream, let result, let queue):
            if core.metrics != nil { messageCounts.consumed(from: queue) }
            switch result {
            case .accepted, .refused: break
            case .acceptedNeedsWake: streamsToWake.append((stream, batchLimit(for: stream, on: channel)))
            case .acceptedOverLimit(let needsWake):
                // Reading stops until the consumer takes half: hand over at once.
                if needsWake { streamsToWake.append((stream, 1)) }
                _ = flowControl.pushed(to: stream, result)
                logger.debug(
                    "a consumer's buffer is full; reading paused until it takes half",
                    metadata: [
                        LoggingKeys.channel: "\(channel.id)", LoggingKeys.queue: .untrusted(stream.queue),
                        LoggingKeys.consumerTag: .untrusted(stream.consumerTag),
                    ])
            }
        case .requeue(let deliveryTag):
            settle(.basicReject(deliveryTag: deliveryTag, requeue: true), on: channel)
        case .unknownConsumer(let consumerTag):
            logger.debug(
                "delivery for an unknown consumer",
                metadata: [LoggingKeys.channel: "\(channel.id)", LoggingKeys.consumerTag: .untrusted(consumerTag)])
        case .answeredGet:
            break
        case .returned(let error, let exchange, let routingKey, let matchedPublish):
            healthCounts.returned += 1
            guard !matchedPublish, let suppressed = logLimiter.admit("returned") else { return }
            logger.warning(
                "the broker returned an unroutable mandatory message",
                metadata: [
                    LoggingKeys.channel: "\(channel.id)",
                    LoggingKeys.replyCode: "\(error.replyCode ?? 0)", LoggingKeys.replyText: .untrusted(error.replyText ?? ""),
                    LoggingKeys.exchange: .untrusted(exchange),
                    LoggingKeys.routingKey: .untrusted(routingKey), LoggingKeys.suppressed: "\(suppressed)",
                ])
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
