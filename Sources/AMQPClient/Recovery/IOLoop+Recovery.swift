#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

// Automatic recovery, as the I/O thread carries it out: reconnecting after a loss the
// application did not ask for, and restoring channels, topology and consumers on the new
// connection. What comes next, and what a reply or a refusal means, is decided by
// ``ConnectionStateMachine``; this file does the I/O.
//
// Commands wait in the mailbox meanwhile and run, in order, once the connection is back.
// Restoring reads frames through the same reader as an open connection: a reply a step waits
// for goes to the state machine, any other frame (a delivery to a consumer restored already)
// is handled as usual.

extension IOLoop {
    /// One turn of the loop while recovering: back off, or read what the broker answers.
    func runRecoveryTurn() {
        guard let recovery = machine.recovery else { return }
        switch recovery.phase {
        case .waiting(let until):
            waitBetweenAttempts(until: until)
        case .connecting:
            // `connect` runs synchronously and reports before it returns; not reached.
            carryOut(machine.tick(at: .now))
        case .restoring:
            readWhileRestoring()
        }
    }

    func beginRecovery(after error: AMQPError) {
        logger.warning("connection lost; recovering", metadata: [LoggingKeys.error: .untrusted(error)])
        destroyConnection()
        socketReadable = false
        channelCloseDeadline = nil
        closeReasons.removeAll()
        channelsWithHeldAck.removeAll()
        flowControl.reset()  // their buffers are dropped: the broker redelivers
        wakeStreams(immediately: true)
        core.setRecovering(true)
        core.emit(.connectionLost(error))
        forgetOldConnection(lost: error)
        // A new connection starts unblocked; the broker says again if an alarm persists.
        setBlocked(nil)
        if let metrics = core.metrics {
            metrics.health.recoveries.increment()
            reportMetrics(metrics, sampleGauges: true)
        }
    }

    /// Fails what was in flight on the lost connection and readies every channel for a new one.
    func forgetOldConnection(lost cause: AMQPError) {
        let error = AMQPError(
            code: .connectionLost,
            message: "the connection was lost before the broker replied (\(cause.message)); it is recovering",
            replyCode: cause.replyCode, replyText: cause.replyText)
        for channel in channels.values {
            // One the application was closing: the broker closed it with the connection.
            let actions = channel.lifecycle.connectionLost()
            if actions.isEmpty {
                channel.resetForNewConnection(lost: error)
            } else {
                apply(actions, to: channel)
            }
        }
    }

    // MARK: Between attempts

    /// Waits until `until`, waking early only to notice ``AMQPConnection/close()``, and runs
    /// the jobs of tasks that prefer this thread meanwhile.
    private func waitBetweenAttempts(until: ContinuousClock.Instant) {
        while core.isOpen {  // only close() refuses commands while the connection recovers
            let now = ContinuousClock.now
            if now >= until {
                carryOut(machine.tick(at: now))
                return
            }
            core.waitForWakeUp(timeout: now.duration(to: until))
            runJobs()
            completeWithoutBroker(core.takeCommandsNeedingNoBroker())
        }
        carryOut(machine.closeRequested(at: .now))
    }

    /// Closes channels and stops consumers on the client's side alone, between recovery
    /// attempts: the lost connection took them with it on the broker, and a recovery does not
    /// bring them back. So `close()` and `cancel()` return even while no broker can be reached.
    private func completeWithoutBroker(_ commands: [Command]) {
        for command in commands {
            switch command {
            case .closeChannel(let ref, let continuation):
                if let channel = channels[ref.id], channel.epoch == ref.epoch {
                    apply(channel.lifecycle.closedWithoutBroker(), to: channel)
                }
                continuation.resume(returning: .ok(.channelCloseOk))
            case .stopConsumer(let ref, let stream, _, let continuation):
                // Deliveries it never handed out come back from the broker with the lost connection.
                if let channel = channels[ref.id], channel.epoch == ref.epoch, channel.isCurrent(stream) {
                    channel.consumers[stream.consumerTag] = nil
                    forgetAutoDeleteQueueIfUnused(stream.queue)
                }
                stream.finish(nil)
                continuation?.resume(returning: .ok(.basicCancelOk))
            default:
                batch.append(command)  // only the two above are taken; anything else runs after recovery
            }
        }
    }

    // MARK: Connecting

    /// Connects and logs in for attempt `attempt`, then reports to the state machine.
    func connectForRecovery(attempt: Int) {
        logger.debug("reconnecting", metadata: [LoggingKeys.attempt: "\(attempt)"])
        core.emit(.recovering(attempt: attempt))
        do {
            try openAnyEndpoint()
        } catch {
            carryOut(machine.attemptFailed(error, at: .now))
            return
        }
        carryOut(machine.connected(at: .now, plan: recoveryPlan()))
    }

    /// What this attempt restores, from the channels and the recorded topology.
    func recoveryPlan() -> RecoveryPlan {
        let planned = channels.values.map { channel in
            RecoveryPlan.Channel(
                id: channel.id,
                prefetch: channel.prefetch.map { RecoveryPlan.Prefetch(count: $0.value, global: $0.key) },
                confirmMode: channel.confirms.isSelected,
                consumerTags: channel.consumersToRestore().map(\.tag),
                republishes: channel.confirms.keepsMessages && channel.confirms.unconfirmedCount > 0)
        }
        guard !topology.isEmpty else { return RecoveryPlan(channels: planned) }
        guard let topologyChannel = freeChannelID() else {
            logger.error("no free channel number to restore exchanges, queues and bindings on")
            return RecoveryPlan(channels: planned)
        }
        var declarations: [RecoveryPlan.Declaration] = []
        for (index, exchange) in topology.exchanges.enumerated() {
            declarations.append(
                .init(kind: .exchange, index: index, reply: .exchangeDeclareOk, description: "exchange \"\(exchange.name)\""))
        }
        for (index, queue) in topology.queues.enumerated() {
            declarations.append(
                .init(
                    kind: .queue, index: index, reply: .queueDeclareOk, description: "queue \"\(queue.name)\"",
                    queueName: queue.name))
        }
        for (index, binding) in topology.bindings.enumerated() {
            declarations.append(
                .init(
                    kind: .binding, index: index, reply: binding.declaration.replies.first ?? .queueBindOk,
                    description: "binding of \"\(binding.destination)\" to \"\(binding.source)\""))
        }
        return RecoveryPlan(channels: planned, topologyChannel: topologyChannel, declarations: declarations)
    }

    // MARK: Restoring

    /// Polls the new connection's socket until it is readable or the attempt's deadline, and
    /// reads what arrived through the one frame reader.
    private func readWhileRestoring() {
        guard let connection else {
            carryOut(machine.attemptFailed(.connectionLost(.socketClosed), at: .now))
            return
        }
        if !connection.hasBufferedInput {
            var wakeAt = heartbeats.nextService
            if let deadline = machine.nextDeadline { wakeAt = min(wakeAt, deadline) }
            let timeout = max(0, ContinuousClock.now.duration(to: wakeAt).microseconds)
            var fds = (
                pollfd(fd: connection.socket, events: Int16(POLLIN), revents: 0),
                pollfd(fd: -1, events: 0, revents: 0)  // commands wait until the connection is back
            )
            SocketWait.wait(&fds, microseconds: timeout)
            socketReadable = fds.0.revents != 0
        }
        readFrames()
        wakeStreams()
        flushOutbound()
        if recovering { carryOut(machine.tick(at: .now)) }
    }

    /// Sends what a recovery step asks for, resolved from the channels and topology as they are
    /// now (a consumer of a server-named queue uses the name the queue got in this attempt).
    func perform(_ step: RecoveryStep) {
        let method: ClientMethod
        switch step {
        case .openChannel, .openTopologyChannel:
            method = .channelOpen
        case .setPrefetch(_, let prefetch):
            method = .basicQos(prefetchCount: prefetch.count, global: prefetch.global)
        case .selectConfirms:
            method = .confirmSelect
        case .declare(let declaration, _):
            guard let declared = declarationMethod(declaration) else {
                carryOut(machine.stepDone(step, at: .now))
                return
            }
            method = declared
        case .closeTopologyChannel:
            method = .channelClose(replyCode: 200, replyText: "Goodbye")
        case .consume(let id, let tag):
            guard let record = channels[id]?.consumers[tag], let spec = record.restoreSpec else {
                carryOut(machine.stepDone(step, at: .now))  // stopped or ended meanwhile
                return
            }
            // A stream consumer resumes after the last delivery the application took, not from
            // the offset it first asked for.
            if let last = record.stream.streamConsumer?.lastOffset {
                method = spec.resuming(after: last).consumeMethod(consumerTag: tag)
            } else {
                method = spec.consumeMethod(consumerTag: tag)
            }
        case .republish(let id):
            if let channel = channels[id] { republish(on: channel) }
            if machine.recovery?.step == step { carryOut(machine.stepDone(step, at: .now)) }
            return
        }
        send(method, on: step.channel)
        flushOutbound()
    }

    private func declarationMethod(_ declaration: RecoveryPlan.Declaration) -> ClientMethod? {
        switch declaration.kind {
        case .exchange: topology.exchanges.indices.contains(declaration.index) ? topology.exchanges[declaration.index].declaration : nil
        case .queue: topology.queues.indices.contains(declaration.index) ? topology.queues[declaration.index].declaration : nil
        case .binding: topology.bindings.indices.contains(declaration.index) ? topology.bindings[declaration.index].declaration : nil
        }
    }

    /// Publishes again, in their original order, the messages unconfirmed at the loss. If the
    /// new connection fails meanwhile, those not written yet are kept for the next attempt.
    private func republish(on channel: ChannelIO) {
        let messages = channel.confirms.takeMessagesToRepublish()
        let connection = self.connection
        for message in messages {
            if connection != nil && self.connection === connection && recovering {
                writePublish(message, on: channel)
            } else {
                channel.confirms.published(message)  // the next attempt publishes it
            }
        }
        flushOutbound()
    }

    func abandonConsumer(_ consumerTag: String, on id: UInt16, because error: AMQPError) {
        guard let channel = channels[id], let record = channel.consumers[consumerTag] else { return }
        logger.warning(
            "could not restore a consumer",
            metadata: [
                LoggingKeys.consumerTag: .untrusted(consumerTag), LoggingKeys.queue: .untrusted(record.restoreSpec?.queue ?? ""),
                LoggingKeys.error: .untrusted(error),
            ])
        channel.consumers[consumerTag] = nil
        record.stream.finish(
            AMQPError(
                code: .consumerCancelled,
                message: "consumer \(consumerTag) could not be restored after the connection recovered: \(error.message)",
                replyCode: error.replyCode, replyText: error.replyText))
    }

    func rename(queue oldName: String, to newName: String) {
        topology.rename(queue: oldName, to: newName)
        for channel in channels.values {
            channel.renameQueue(oldName, to: newName)
        }
        logger.debug(
            "server-named queue renamed by recovery",
            metadata: [LoggingKeys.queue: .untrusted(oldName), LoggingKeys.newQueue: .untrusted(newName)])
        core.emit(.queueRenamed(from: oldName, to: newName))
    }

    // MARK: Ending an attempt

    func attemptFailed(_ attempt: Int, _ error: AMQPError) {
        destroyConnection()
        socketReadable = false
        logger.warning(
            "recovery attempt failed", metadata: [LoggingKeys.attempt: "\(attempt)", LoggingKeys.error: .untrusted(error)])
        core.emit(.recoveryFailed(attempt: attempt, error: error))
        core.metrics?.health.recoveryAttemptsFailed.increment()
        // What this attempt restored belonged to a connection that is gone too.
        forgetOldConnection(lost: machine.recovery?.cause ?? error)
    }

    func recovered(attempt: Int) {
        core.setBlockingSocket(nil)
        core.setRecovering(false)
        wakeStreams(immediately: true)
        logger.debug("connection recovered", metadata: [LoggingKeys.attempt: "\(attempt)"])
        if let metrics = core.metrics {
            metrics.health.recoveryAttemptsSucceeded.increment()
            reportMetrics(metrics, sampleGauges: true)
        }
        core.emit(.recovered)
    }
}
