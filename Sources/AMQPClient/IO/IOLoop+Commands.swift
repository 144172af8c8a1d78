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
            if blocked && held.mustHold(command) {
                held.hold(command)
                continue
            }
            run(command)
        }
        if blocked { core.setHeldPublishBytes(held.publishBytes) }
        flushHeldAcks()
        flushOutbound()
        if let metrics = core.metrics { reportMetrics(metrics) }
    }

    // MARK: Commands

    func run(_ command: Command) {
        // Acks held back in this batch go out before anything that is not itself a settlement.
        if case .settle = command {} else { flushHeldAcks() }
        switch command {
        case .publish(let ref, let request):
            guard let channel = openChannel(ref) else {
                let error = closedError(ref)
                request.confirm?.fail(error)
                if core.metrics != nil { messageCounts.failedToPublish(to: request.exchange, error) }
                return
            }
            writePublish(request, on: channel)
        case .settle(let ref, let generation, let method):
            guard let channel = openChannel(ref) else { return }
            guard channel.acceptsSettlement(fromGeneration: generation) else {
                logger.debug(
                    "ignoring the settlement of a delivery received before the connection recovered",
                    metadata: [LoggingKeys.channel: "\(channel.id)"])
                return
            }
            lastSettlementAt = .now
            settle(method, on: channel)
        case .call(let ref, let method, let continuation):
            guard let channel = openChannel(ref) else {
                continuation.resume(throwing: closedError(ref))
                return
            }
            var reply = PendingReply(replies: method.replies, continuation: continuation)
            let resume = reply.complete
            switch method {
            case .basicGet(_, noAck: false): reply.tracksDelivery = true
            case .confirmSelect: channel.confirms.isSelected = true
            case .basicQos(let count, let global):
                let (id, epoch) = (channel.id, channel.epoch)
                reply = PendingReply(replies: method.replies) { [unowned self] result in
                    if case .success = result { self.channel(id, epoch: epoch)?.prefetch[global] = count }
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
            reply.deadline = deadlineForCall()
            channel.pendingReplies.append(reply)
            send(method, on: channel.id)
        case .consume(let ref, let method, let stream, let continuation):
            guard let channel = openChannel(ref) else {
                let error = closedError(ref)
                stream.finish(error)
                continuation.resume(throwing: error)
                return
            }
            if case .basicConsume(let queue, _, let noAck, let exclusive, let arguments) = method {
                nextConsumerOrder += 1
                channel.addConsumer(
                    stream,
                    spec: ConsumerRecord.Spec(
                        queue: queue, noAck: noAck, exclusive: exclusive, arguments: arguments, order: nextConsumerOrder))
            }
            let (id, epoch) = (channel.id, channel.epoch)
            var reply = PendingReply(replies: method.replies) { [unowned self] result in
                if case .failure(let error) = result, let channel = self.channel(id, epoch: epoch), channel.isCurrent(stream) {
                    // The connection was lost before consume-ok: no consumer to restore.
                    channel.consumers[stream.consumerTag] = nil
                    stream.finish(error)
                }
                switch result {
                case .success(let reply): continuation.resume(returning: reply)
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
            reply.deadline = deadlineForCall()
            channel.pendingReplies.append(reply)
            send(method, on: channel.id)
        case .stopConsumer(let ref, let stream, let requeue, let continuation):
            guard let channel = openChannel(ref) else {
                stream.finish(nil)
                continuation?.resume(returning: .ok(.basicCancelOk))
                return
            }
            if channel.isCurrent(stream) {
                // Stopped from now on, whatever happens to the connection before cancel-ok.
                channel.stopRestoring(stream.consumerTag)
                channel.pendingReplies.append(PendingReply(replies: [.basicCancelOk], continuation: continuation))
                send(.basicCancel(consumerTag: stream.consumerTag), on: channel.id)
                // The sequence ends after what is buffered now, without waiting for cancel-ok: a
                // graceful shutdown must not hang on a broker that does not answer. What the
                // broker sends meanwhile is given back (requeued).
                stream.finish(nil)
            } else {
                // Already cancelled (by the application or the broker): only the requeue is left.
                stream.finish(nil)
                continuation?.resume(returning: .ok(.basicCancelOk))
            }
            let generation = channel.generation
            for delivery in requeue where delivery.generation == generation {
                settle(.basicReject(deliveryTag: delivery.deliveryTag, requeue: true), on: channel)
            }
        case .openChannel(let continuation):
            openNewChannel(continuation)
        case .closeChannel(let ref, let continuation):
            guard let channel = openChannel(ref) else {
                continuation.resume(returning: .ok(.channelCloseOk))
                return
            }
            channel.pendingReplies.append(PendingReply(replies: [.channelCloseOk], continuation: continuation))
            close(channel, because: nil)
        case .closeConnection:
            carryOut(machine.closeRequested(at: .now, brokerUnresponsive: brokerUnresponsive))
        }
    }

    /// Starts closing a channel: by the application (`error` is `nil`), or because a call timed
    /// out, which fails everything waiting on the channel at once.
    func close(_ channel: ChannelIO, because error: AMQPError?) {
        let deadline = ContinuousClock.now + (brokerUnresponsive ? .zero : core.configuration.closeTimeout)
        apply(channel.lifecycle.close(because: error, deadline: deadline), to: channel)
        if channel.lifecycle.isClosing { channelCloseDeadline = min(channelCloseDeadline ?? deadline, deadline) }
    }

    /// Carries out what a channel's state machine decided (see ``ChannelStateMachine``).
    func apply(_ actions: [ChannelStateMachine.Action], to channel: ChannelIO) {
        for action in actions {
            switch action {
            case .sendClose: send(.channelClose(replyCode: 200, replyText: "Goodbye"), on: channel.id)
            case .sendCloseOk: send(.channelCloseOk, on: channel.id)
            case .markClosed(let error): channel.handle.markClosed(error)
            case .rememberReason(let error): closeReasons[channel.id] = (channel.epoch, error)
            case .finish(let consumers, let pending): channel.finish(consumersWith: consumers, pendingWith: pending)
            case .failPending(let error): channel.failPending(error)
            case .release:
                if channels[channel.id] === channel {
                    channels[channel.id] = nil
                    machine.channelReleased(channel.id)
                }
            case .protocolViolation(let violation): lost(.protocolViolation(violation))
            }
        }
    }

    /// The channel numbered `id` if it is still the incarnation `epoch`, open or closing. Reply
    /// completions look channels up by number rather than hold them weakly: one weak reference
    /// would move a channel's reference count, touched for every frame, to a slower side table.
    func channel(_ id: UInt16, epoch: UInt32) -> ChannelIO? {
        guard let channel = channels[id], channel.epoch == epoch else { return nil }
        return channel
    }

    func openChannel(_ ref: ChannelRef) -> ChannelIO? {
        guard let channel = channel(ref.id, epoch: ref.epoch), channel.lifecycle.isOpen else { return nil }
        return channel
    }

    func closedError(_ ref: ChannelRef) -> AMQPError {
        if let channel = channel(ref.id, epoch: ref.epoch), let error = channel.handle.closedError {
            return error
        }
        if let reason = closeReasons[ref.id], reason.epoch == ref.epoch { return reason.error }
        return AMQPError(code: .channelClosed, message: "channel \(ref.id) is closed")
    }

    func openNewChannel(_ continuation: CancellableContinuation<AMQPChannel>) {
        guard let id = freeChannelID() else {
            continuation.resume(
                throwing: AMQPError(
                    code: .invalidArgument,
                    message: "all \(connection?.channelMax ?? 0) channels of this connection are in use"))
            return
        }
        nextEpoch &+= 1
        let handle = AMQPChannel(core: core, ref: ChannelRef(id: id, epoch: nextEpoch))
        let recovery = core.configuration.recovery
        let channel = ChannelIO(
            handle: handle, keepsUnconfirmedMessages: recovery.isEnabled && recovery.republishUnconfirmed)
        channels[id] = channel
        var reply = PendingReply(replies: [.channelOpenOk]) { [unowned self] result in
            switch result {
            case .success:
                // Whoever asked was cancelled meanwhile: nobody holds the channel, so close it.
                if !continuation.resume(returning: handle), let channel = self.channel(id, epoch: handle.ref.epoch) {
                    self.close(channel, because: nil)
                }
            case .failure(let error): continuation.resume(throwing: error)
            }
        }
        reply.deadline = deadlineForCall()
        channel.pendingReplies.append(reply)
        send(.channelOpen, on: id)
    }

    func freeChannelID() -> UInt16? {
        let channelMax = connection?.channelMax ?? 0
        var id: UInt16 = 1
        while id <= channelMax {
            if channels[id] == nil { return id }
            id += 1
        }
        return nil
    }

    /// Encodes a method into the outgoing buffer; it goes out with the rest of the batch.
    func send(_ method: ClientMethod, on channel: UInt16) {
        guard let connection else { return }
        do {
            try connection.append(method, channel: channel)
        } catch {
            lost(error)
            return
        }
        if connection.shouldFlush { flushOutbound() }
    }

    /// Writes the outgoing buffer to the socket. Returns `false` when the connection failed.
    @discardableResult
    func flushOutbound() -> Bool {
        // Once the loop has finished there is no connection: nothing to write.
        guard let connection, connection.hasPendingOutput else { return true }
        do {
            try connection.flush(limits: writeLimits)
            return true
        } catch {
            lost(error)
            return false
        }
    }

    /// Encodes a publish (method, content header, body frames) into the outgoing buffer.
    func writePublish(_ request: PublishRequest, on channel: ChannelIO) {
        guard let connection else { return }
        do {
            try connection.appendPublish(request, channel: channel.id)
        } catch {
            request.confirm?.fail(error)
            logger.error("a message could not be encoded", metadata: [LoggingKeys.error: .untrusted(error)])
            return
        }
        if connection.shouldFlush && !flushOutbound() {
            // The failed flush has dealt with the loss already; this message went down with the buffer.
            if recovering && channel.confirms.keepsMessages && channel.confirms.isSelected {
                channel.confirms.published(request)  // republished after the recovery
            } else {
                request.confirm?.fail(
                    AMQPError(code: .outcomeUnknown, message: "the connection failed while the message was being sent"))
            }
            return
        }
        channel.confirms.published(request)
        if core.metrics != nil { messageCounts.published(to: request.exchange) }
    }

    // MARK: Settling deliveries

    /// Records an ack, nack or reject and sends what the channel's ``Settlements`` say. In-order
    /// acks are held back and merged, so a run of them costs one write.
    func settle(_ method: ClientMethod, on channel: ChannelIO) {
        healthCounts.settled(method)
        switch channel.settlements.settle(method) {
        case .hold(let first):
            if first { channelsWithHeldAck.append(channel) }
        case .send(let method):
            send(method, on: channel.id)
        case .sendHeldAckThen(let heldAck, let method):
            send(heldAck, on: channel.id)
            send(method, on: channel.id)
        }
    }

    /// Sends the acks held back in this batch.
    func flushHeldAcks() {
        guard !channelsWithHeldAck.isEmpty else { return }
        let holding = channelsWithHeldAck
        channelsWithHeldAck.removeAll(keepingCapacity: true)
        for channel in holding {
            guard let ack = channel.settlements.takeHeldAck() else { continue }
            if channels[channel.id] === channel, channel.lifecycle.isOpen {
                send(ack, on: channel.id)
            }
        }
    }

    // MARK: Blocked connections

    /// Puts the held commands back in front of the new ones, in their original order.
    func releaseHeld() {
        var released = held.takeAll()
        released.append(contentsOf: batch)
        batch = released
        core.setHeldPublishBytes(0)
    }
}
