#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ
import DequeModule
import Logging

// Running the commands tasks queue: methods, publishes, settlements, and holding
// publishes back while the broker blocks the connection.

extension IOLoop {
    func runCommands() {
        core.takeCommands(into: &batch)
        if !blocked && !held.isEmpty { releaseHeld() }
        guard !batch.isEmpty else { return }
        // popFirst moves each command out: no copy of its strings, properties and body. A lost
        // connection stops the batch; what is left runs once the connection has recovered.
        while !recovering, let command = batch.popFirst() {
            if finished {
                command.fail(finalError ?? .connectionClosedByApplication)
                continue
            }
            if blocked && mustHold(command) {
                hold(command)
                continue
            }
            run(command)
        }
        if blocked { core.setHeldPublishBytes(heldPublishBytes) }
        flushDeferredAcks()
        flushOutbound()
    }

    // MARK: Commands

    func run(_ command: Command) {
        if case .settle = command {} else { flushDeferredAcks() }
        switch command {
        case .publish(let ref, let request):
            guard let channel = openChannel(ref) else {
                request.confirm?.fail(closedError(ref))
                return
            }
            publish(request, on: channel)
        case .settle(let ref, let generation, let method):
            guard let channel = openChannel(ref) else { return }
            guard channel.generation == generation else {
                // From before a recovery: the broker has requeued that delivery already, and
                // its tag may now name another one.
                logger.debug("ignoring the settlement of a delivery received before the connection recovered")
                return
            }
            lastSettlementAt = .now
            settleAndSend(method, on: channel)
        case .call(let ref, let method, let continuation):
            guard let channel = openChannel(ref) else {
                continuation.resume(throwing: closedError(ref))
                return
            }
            var reply = PendingReply(replies: method.replies, continuation: continuation)
            let resume = reply.complete
            switch method {
            case .basicGet(_, noAck: false): reply.tracksDelivery = true
            case .confirmSelect: channel.confirmMode = true
            case .basicQos(let count, let global):
                reply = PendingReply(replies: method.replies) { [weak channel] result in
                    if case .success = result { channel?.prefetch[global] = count }
                    resume(result)
                }
            default:
                if Topology.changes(method) {
                    reply = PendingReply(replies: method.replies) { [topology] result in
                        if case .success(let answer) = result { topology.record(method, reply: answer) }
                        resume(result)
                    }
                }
            }
            channel.pending.append(reply)
            send(method, on: channel.id)
        case .consume(let ref, let method, let stream, let continuation):
            guard let channel = openChannel(ref) else {
                let error = closedError(ref)
                stream.finish(error)
                continuation.resume(throwing: error)
                return
            }
            let tag = stream.consumerTag
            channel.consumers[tag] = stream
            if case .basicConsume(let queue, _, let noAck, let exclusive, let arguments) = method {
                nextConsumerOrder += 1
                channel.consumerSpecs[tag] = ChannelIO.ConsumerSpec(
                    queue: queue, noAck: noAck, exclusive: exclusive, arguments: arguments, order: nextConsumerOrder)
            }
            channel.pending.append(
                PendingReply(replies: method.replies) { [weak channel] result in
                    if case .failure(let error) = result, let channel, channel.consumers[tag] === stream {
                        // The connection was lost before consume-ok: no consumer to restore.
                        channel.consumers[tag] = nil
                        channel.consumerSpecs[tag] = nil
                        stream.finish(error)
                    }
                    switch result {
                    case .success(let reply): continuation.resume(returning: reply)
                    case .failure(let error): continuation.resume(throwing: error)
                    }
                })
            send(method, on: channel.id)
        case .stopConsumer(let ref, let stream, let requeue, let continuation):
            guard let channel = openChannel(ref) else {
                stream.finish(nil)
                continuation?.resume(returning: .ok(AMQP_BASIC_CANCEL_OK_METHOD))
                return
            }
            if channel.consumers[stream.consumerTag] === stream {
                // Stopped from now on, whatever happens to the connection before cancel-ok.
                channel.consumerSpecs[stream.consumerTag] = nil
                channel.pending.append(PendingReply(replies: [AMQP_BASIC_CANCEL_OK_METHOD], continuation: continuation))
                send(.basicCancel(consumerTag: stream.consumerTag), on: channel.id)
            } else {
                // Already cancelled (by the application or the broker): only the requeue is left.
                stream.finish(nil)
                continuation?.resume(returning: .ok(AMQP_BASIC_CANCEL_OK_METHOD))
            }
            for delivery in requeue where delivery.generation == channel.generation {
                settleAndSend(.basicReject(deliveryTag: delivery.deliveryTag, requeue: true), on: channel)
            }
        case .openChannel(let continuation):
            openNewChannel(continuation)
        case .closeChannel(let ref, let continuation):
            guard let channel = openChannel(ref) else {
                continuation.resume(returning: .ok(AMQP_CHANNEL_CLOSE_OK_METHOD))
                return
            }
            channel.state = .closing
            channel.handle.markClosed(.channelClosedByApplication(channel.id))
            channel.pending.append(PendingReply(replies: [AMQP_CHANNEL_CLOSE_OK_METHOD], continuation: continuation))
            let deadline = ContinuousClock.now + core.configuration.closeTimeout
            channel.closeDeadline = deadline
            closeDeadline = min(closeDeadline ?? deadline, deadline)
            send(.channelClose(replyCode: 200, replyText: "Goodbye"), on: channel.id)
        case .closeConnection:
            guard !closingConnection else { return }
            closingConnection = true
            failHeld(.connectionClosedByApplication)
            closeDeadline = ContinuousClock.now + core.configuration.closeTimeout
            send(.connectionClose(replyCode: 200, replyText: "Goodbye"), on: 0)
        }
    }

    func openChannel(_ ref: ChannelRef) -> ChannelIO? {
        guard let channel = channels[ref.id], channel.epoch == ref.epoch, channel.state == .open else { return nil }
        return channel
    }

    func closedError(_ ref: ChannelRef) -> AMQPError {
        if let channel = channels[ref.id], channel.epoch == ref.epoch, let error = channel.handle.closedError {
            return error
        }
        if let reason = closeReasons[ref.id], reason.epoch == ref.epoch { return reason.error }
        return AMQPError(code: .channelClosed, message: "channel \(ref.id) is closed")
    }

    func openNewChannel(_ continuation: CheckedContinuation<AMQPChannel, any Error>) {
        guard let id = freeChannelID() else {
            continuation.resume(
                throwing: AMQPError(
                    code: .invalidArgument, message: "all \(channelMax) channels of this connection are in use"))
            return
        }
        nextEpoch &+= 1
        let handle = AMQPChannel(core: core, ref: ChannelRef(id: id, epoch: nextEpoch))
        let recovery = core.configuration.recovery
        let channel = ChannelIO(
            handle: handle, keepsUnconfirmedMessages: recovery.isEnabled && recovery.republishUnconfirmed)
        channels[id] = channel
        channel.pending.append(PendingReply(replies: [AMQP_CHANNEL_OPEN_OK_METHOD]) { result in
            switch result {
            case .success: continuation.resume(returning: handle)
            case .failure(let error): continuation.resume(throwing: error)
            }
        })
        channel.state = .open
        send(.channelOpen, on: id)
    }

    func freeChannelID() -> UInt16? {
        var id: UInt16 = 1
        while id <= channelMax {
            if channels[id] == nil { return id }
            id += 1
        }
        return nil
    }

    /// Encodes a method into the outgoing buffer; it goes out with the rest of the batch.
    func send(_ method: ClientMethod, on channel: UInt16) {
        guard connection != nil else { return }
        let status = method.encode(into: writer, channel: channel, pool: pool)
        pool.recycle()
        if status != AMQP_STATUS_OK.rawValue {
            connectionLost(status)
        } else if writer.count >= FrameWriter.flushThreshold {
            flushOutbound()
        }
    }

    /// Writes the outgoing buffer to the socket. Returns `false` when the connection failed.
    @discardableResult
    func flushOutbound() -> Bool {
        guard !writer.isEmpty else { return true }
        guard let connection, !finished else {
            writer.discard()
            return false
        }
        let socket = amqp_get_sockfd(connection)
        let status =
            socket < 0 ? AMQP_STATUS_SOCKET_CLOSED.rawValue : writer.flush(to: socket, stallLimit: writeStallLimit)
        guard status == AMQP_STATUS_OK.rawValue else {
            writer.discard()
            writeFailed(status)
            return false
        }
        return true
    }

    /// Encodes a publish (method, content header, body frames) into the outgoing buffer.
    func publish(_ request: PublishRequest, on channel: ChannelIO) {
        guard connection != nil else { return }
        let status = writer.appendPublish(request, channel: channel.id, pool: pool)
        guard status == AMQP_STATUS_OK.rawValue else {
            request.confirm?.fail(.unencodable(status))
            logger.error("a message could not be encoded", metadata: ["amqp.error": "\(AMQPError.unencodable(status))"])
            return
        }
        if writer.count >= FrameWriter.flushThreshold && !flushOutbound() {
            // The failed flush has dealt with the loss already; this message went down with the buffer.
            if recovering && channel.keepsUnconfirmedMessages && channel.confirmMode {
                channel.published(request)  // republished after the recovery
            } else {
                request.confirm?.fail(
                    AMQPError(code: .outcomeUnknown, message: "the connection failed while the message was being sent"))
            }
            return
        }
        channel.published(request)
    }

    // MARK: Settling deliveries

    /// Sends an ack, nack or reject and records the settlement. A plain ack that leaves every
    /// earlier delivery settled is held back instead, so a run of in-order acks costs one write.
    func settleAndSend(_ method: ClientMethod, on channel: ChannelIO) {
        switch method {
        case .basicAck(let tag, let multiple):
            channel.unsettled.settle(tag, multiple: multiple)
            if channel.unsettled.allSettled(upTo: tag) {
                if channel.deferredAck == nil { channelsWithDeferredAck.append(channel) }
                channel.deferredAck = max(channel.deferredAck ?? 0, tag)
                return
            }
        case .basicNack(let tag, let multiple, _):
            // A multiple nack must not reach deliveries that were acked but not yet sent.
            flushDeferredAcks()
            channel.unsettled.settle(tag, multiple: multiple)
        case .basicReject(let tag, _):
            flushDeferredAcks()
            channel.unsettled.settle(tag, multiple: false)
        default:
            flushDeferredAcks()
        }
        send(method, on: channel.id)
    }

    func flushDeferredAcks() {
        guard !channelsWithDeferredAck.isEmpty else { return }
        let deferred = channelsWithDeferredAck
        channelsWithDeferredAck.removeAll(keepingCapacity: true)
        for channel in deferred {
            guard let tag = channel.deferredAck else { continue }
            channel.deferredAck = nil
            if channels[channel.id] === channel, channel.state == .open {
                send(.basicAck(deliveryTag: tag, multiple: true), on: channel.id)
            }
        }
    }

    // MARK: Blocked connections

    func mustHold(_ command: Command) -> Bool {
        switch command {
        case .publish: true
        case .call(let ref, _, _), .consume(let ref, _, _, _), .stopConsumer(let ref, _, _, _), .closeChannel(let ref, _):
            channelsWithHeldCommands.contains(ref.id)
        case .settle, .openChannel, .closeConnection: false  // settlements never wait
        }
    }

    func hold(_ command: Command) {
        if case .publish(let ref, let request) = command {
            channelsWithHeldCommands.insert(ref.id)
            heldPublishBytes += ConnectionCore.publishCost(request)
        }
        held.append(command)
    }

    /// Puts the held commands back in front of the new ones, in their original order.
    func releaseHeld() {
        held.append(contentsOf: batch)
        batch = held
        held = []
        channelsWithHeldCommands.removeAll()
        heldPublishBytes = 0
        core.setHeldPublishBytes(0)
    }

    func failHeld(_ error: AMQPError) {
        let commands = held
        held = []
        channelsWithHeldCommands.removeAll()
        heldPublishBytes = 0
        for command in commands { command.fail(error) }
    }
}
