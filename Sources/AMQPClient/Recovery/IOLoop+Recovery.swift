import Logging

// Automatic recovery: reconnecting after a loss the application did not ask for, and restoring
// channels, topology and consumers on the new connection.
//
// It runs on the I/O thread, which does nothing else meanwhile: commands wait in the mailbox
// and run, in order, once the connection is back. Restoring talks to the broker one method at a
// time, handling any other frame (deliveries to consumers restored already) as usual.

extension IOLoop {
    /// Why a method sent during recovery failed.
    enum RecoveryCallFailure: Error {
        /// The broker closed the channel (say, a consumer's queue no longer exists).
        case channelClosed(AMQPError)
        /// The new connection failed: the attempt ends.
        case connection(AMQPError)
    }

    func beginRecovery(after error: AMQPError) {
        logger.warning("connection lost; recovering", metadata: [LoggingKeys.error: .untrusted(error)])
        recoveryCause = error
        attemptFailure = nil
        destroyConnection()
        socketReadable = false
        closeDeadline = nil
        closeReasons.removeAll()
        channelsWithHeldAck.removeAll()
        fullConsumers.removeAll()  // their buffers are dropped: the broker redelivers
        wakeStreams(immediately: true)
        core.setRecovering(true)
        core.emit(.connectionLost(error))
        forgetOldConnection()
        // A new connection starts unblocked; the broker says again if an alarm persists.
        setBlocked(nil)
        if let metrics = core.metrics {
            metrics.health.recoveries.increment()
            reportMetrics(metrics, sampleGauges: true)
        }
    }

    /// Fails what was in flight on the lost connection and readies every channel for a new one.
    func forgetOldConnection() {
        let cause = recoveryCause ?? attemptFailure ?? AMQPError(code: .connectionLost, message: "the connection was lost")
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

    /// Reconnects until an attempt restores everything, the application closes the connection,
    /// or ``AMQPConnection/Configuration/Recovery/maximumAttempts`` is reached.
    func recover() {
        let recovery = core.configuration.recovery
        var lastError = recoveryCause ?? AMQPError(code: .connectionLost, message: "the connection was lost")
        // A connection lost soon after it (re)connected counts as one more failed attempt: the
        // backoff goes on growing instead of starting again.
        var attempt = 0
        if ContinuousClock.now - lastConnected.at < recovery.backoffResetAfter {
            attempt = lastConnected.attempts
            if attempt > 0 {
                logger.debug(
                    "the connection was lost soon after it recovered; the backoff goes on",
                    metadata: [LoggingKeys.attempt: "\(attempt)"])
            }
        }
        while true {
            attempt += 1
            if let maximum = recovery.maximumAttempts, attempt > maximum {
                let error = AMQPError(
                    code: .connectionLost,
                    message: "gave up recovering the connection after \(maximum) attempts: \(lastError.message)",
                    replyCode: lastError.replyCode, replyText: lastError.replyText, libraryStatus: lastError.libraryStatus)
                logger.error("connection recovery gave up", metadata: [LoggingKeys.error: .untrusted(error)])
                endRecovery()
                tearDown(error, byApplication: false)
                return
            }
            if closeRequested(within: recovery.delay(beforeAttempt: attempt)) {
                endRecovery()
                tearDown(.connectionClosedByApplication, byApplication: true)
                return
            }
            logger.debug("reconnecting", metadata: [LoggingKeys.attempt: "\(attempt)"])
            recoveryAttempt = attempt
            core.emit(.recovering(attempt: attempt))
            attemptFailure = nil
            attemptDeadline = ContinuousClock.now + recovery.attemptTimeout
            do {
                try openAnyEndpoint()
                try restore()
            } catch {
                destroyConnection()
                lastError = error
                logger.warning(
                    "recovery attempt failed", metadata: [LoggingKeys.attempt: "\(attempt)", LoggingKeys.error: .untrusted(error)])
                core.emit(.recoveryFailed(attempt: attempt, error: error))
                core.metrics?.health.recoveryAttemptsFailed.increment()
                // What this attempt restored belonged to a connection that is gone too.
                attemptFailure = nil
                forgetOldConnection()
                continue
            }
            endRecovery()
            lastConnected = (.now, attempt)
            logger.debug("connection recovered", metadata: [LoggingKeys.attempt: "\(attempt)"])
            if let metrics = core.metrics {
                metrics.health.recoveryAttemptsSucceeded.increment()
                reportMetrics(metrics, sampleGauges: true)
            }
            core.emit(.recovered)
            return
        }
    }

    private func endRecovery() {
        recoveryCause = nil
        attemptFailure = nil
        attemptDeadline = nil
        core.setBlockingSocket(nil)
        core.setRecovering(false)
    }

    /// Waits `delay`, waking early only to notice ``AMQPConnection/close()``. Returns whether the
    /// application asked to close.
    private func closeRequested(within delay: Duration) -> Bool {
        let deadline = ContinuousClock.now + delay
        while core.isOpen {  // only close() refuses commands while the connection recovers
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return false }
            core.waitForWakeUp(timeout: remaining)
            runJobs()
            completeWithoutBroker(core.takeCommandsNeedingNoBroker())
        }
        return true
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

    // MARK: Restoring

    /// Restores, in RabbitMQ's recommended order: channels with their prefetch and confirm
    /// mode, exchanges, queues, bindings, consumers; then republishes what was unconfirmed.
    /// Throws when the new connection fails; what the broker refuses is logged and skipped.
    private func restore() throws(AMQPError) {
        defer { wakeStreams(immediately: true) }
        let ordered = channels.values.sorted { $0.id < $1.id }
        for channel in ordered {
            try reopenOrAbandon(channel)
        }
        if !topology.isEmpty {
            try restoreTopology()
        }
        for channel in ordered where channels[channel.id] === channel {
            try restoreConsumers(on: channel)
        }
        for channel in ordered where channels[channel.id] === channel {
            for message in channel.confirms.takeMessagesToRepublish() {
                writePublish(message, on: channel)
                if let attemptFailure { throw attemptFailure }
            }
        }
        flushOutbound()
        if let attemptFailure { throw attemptFailure }
    }

    private func reopen(_ channel: ChannelIO) throws(RecoveryCallFailure) {
        _ = try recoveryCall(.channelOpen, on: channel.id)
        // Per-consumer prefetch first, as an application sets it before any global one.
        for (global, count) in channel.prefetch.sorted(by: { !$0.key && $1.key }) {
            _ = try recoveryCall(.basicQos(prefetchCount: count, global: global), on: channel.id)
        }
        if channel.confirms.isSelected {
            _ = try recoveryCall(.confirmSelect, on: channel.id)
        }
    }

    /// Reopens a channel; one the broker refuses to reopen is closed for good with the broker's reason.
    private func reopenOrAbandon(_ channel: ChannelIO) throws(AMQPError) {
        do {
            try reopen(channel)
        } catch {
            switch error {
            case .connection(let error): throw error
            case .channelClosed(let error):
                logger.warning(
                    "could not restore a channel",
                    metadata: [LoggingKeys.channel: "\(channel.id)", LoggingKeys.error: .untrusted(error)])
                // recoveryCall answered the broker's close already.
                apply(channel.lifecycle.brokerClosed(error, answered: true), to: channel)
            }
        }
    }

    private func restoreTopology() throws(AMQPError) {
        guard let id = freeChannelID() else {
            logger.error("no free channel number to restore exchanges, queues and bindings on")
            return
        }
        // A channel of its own, unknown to `channels`: a refused declaration closes only it.
        func openTopologyChannel() throws(AMQPError) {
            do {
                _ = try recoveryCall(.channelOpen, on: id)
            } catch {
                switch error {
                case .connection(let error), .channelClosed(let error): throw error
                }
            }
        }
        func declare(_ method: ClientMethod, _ what: String) throws(AMQPError) -> ServerMethod? {
            do {
                return try recoveryCall(method, on: id)
            } catch {
                switch error {
                case .connection(let error): throw error
                case .channelClosed(let error):
                    logger.warning("could not restore \(what)", metadata: [LoggingKeys.error: .untrusted(error)])
                    try openTopologyChannel()
                    return nil
                }
            }
        }

        recoveryTopologyChannel = id
        defer { recoveryTopologyChannel = nil }
        try openTopologyChannel()
        for exchange in topology.exchanges {
            _ = try declare(exchange.declaration, "exchange \"\(exchange.name)\"")
        }
        for queue in topology.queues {
            let reply = try declare(queue.declaration, "queue \"\(queue.name)\"")
            if case .queueDeclareOk(let info) = reply, info.name != queue.name {
                rename(queue: queue.name, to: info.name)
            }
        }
        for binding in topology.bindings {
            _ = try declare(binding.declaration, "binding of \"\(binding.destination)\" to \"\(binding.source)\"")
        }
        _ = try declare(.channelClose(replyCode: 200, replyText: "Goodbye"), "the recovery channel's close")
    }

    private func rename(queue oldName: String, to newName: String) {
        topology.rename(queue: oldName, to: newName)
        for channel in channels.values {
            channel.renameQueue(oldName, to: newName)
        }
        logger.debug(
            "server-named queue renamed by recovery",
            metadata: [LoggingKeys.queue: .untrusted(oldName), LoggingKeys.newQueue: .untrusted(newName)])
        core.emit(.queueRenamed(from: oldName, to: newName))
    }

    private func restoreConsumers(on channel: ChannelIO) throws(AMQPError) {
        for (tag, stream, spec) in channel.consumersToRestore() {
            // A stream consumer resumes after the last delivery the application took, not from
            // the offset it first asked for.
            var method = spec.consumeMethod(consumerTag: tag)
            if let last = stream.streamConsumer?.lastOffset {
                method = spec.resuming(after: last).consumeMethod(consumerTag: tag)
            }
            do {
                _ = try recoveryCall(method, on: channel.id)
            } catch {
                switch error {
                case .connection(let error): throw error
                case .channelClosed(let error) where Self.replicaNotReady(error) && recoveryAttempt < Self.replicaRetryAttempts:
                    // The queue's replica on this node is restarting (its leader's node just went
                    // down): the next attempt, a moment later and perhaps on another node, restores
                    // everything again.
                    throw error
                case .channelClosed(let error):
                    // Say, its queue is gone: this consumer ends; the channel reopens for the others.
                    logger.warning(
                        "could not restore a consumer",
                        metadata: [
                            LoggingKeys.consumerTag: .untrusted(tag), LoggingKeys.queue: .untrusted(spec.queue),
                            LoggingKeys.error: .untrusted(error),
                        ])
                    channel.consumers[tag] = nil
                    stream.finish(
                        AMQPError(
                            code: .consumerCancelled,
                            message: "consumer \(tag) could not be restored after the connection recovered: \(error.message)",
                            replyCode: error.replyCode, replyText: error.replyText))
                    try reopenOrAbandon(channel)
                    if channels[channel.id] !== channel { return }
                }
            }
        }
    }

    /// How many recovery attempts a consumer refused by a replica that is not ready may hold up.
    static let replicaRetryAttempts = 3

    /// RabbitMQ refuses to consume from a stream (or quorum queue) whose replica on the node is not
    /// running, as it is for a moment while a new leader takes over after a node went down.
    static func replicaNotReady(_ error: AMQPError) -> Bool {
        error.replyCode == 406 && error.replyText?.contains("does not have a replica on the local node") == true
    }

    // MARK: Talking to the broker during recovery

    /// Sends `method` and waits for its reply, handling every other frame as usual. Bounded by
    /// the attempt's deadline (``AMQPConnection/Configuration/Recovery/attemptTimeout``).
    func recoveryCall(_ method: ClientMethod, on id: UInt16) throws(RecoveryCallFailure) -> ServerMethod {
        send(method, on: id)
        flushOutbound()
        if let attemptFailure { throw .connection(attemptFailure) }
        guard let connection else {
            throw .connection(AMQPError(code: .connectionLost, message: "the connection was lost during recovery"))
        }
        let deadline = attemptDeadline ?? ContinuousClock.now + core.configuration.connectTimeout
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero else {
                throw .connection(
                    AMQPError(
                        code: .connectTimeout,
                        message: "the recovery attempt did not finish within \(core.configuration.recovery.attemptTimeout)"))
            }
            let frame: ReceivedFrame
            switch connection.nextFrame(timeout: remaining) {
            case .timedOut: continue
            case .failed(let error):
                throw .connection(
                    AMQPError(
                        code: error.code, message: "during recovery: \(error.message)",
                        libraryStatus: error.libraryStatus))
            case .frame(let received): frame = received
            }
            defer { connection.releaseBuffers(channel: frame.channel) }
            if case .method(let reply) = frame.payload, frame.channel == id || frame.channel == 0 {
                switch reply {
                case .connectionClose(let replyCode, let replyText, _, _) where frame.channel == 0:
                    send(.connectionCloseOk, on: 0)
                    throw .connection(
                        AMQPError(
                            code: .connectionClosed, message: "the broker closed the connection during recovery",
                            replyCode: replyCode, replyText: replyText))
                case .channelClose(let replyCode, let replyText, let classID, let methodID) where frame.channel == id:
                    send(.channelCloseOk, on: id)
                    if let attemptFailure { throw .connection(attemptFailure) }
                    throw .channelClosed(
                        .channelClosedByBroker(
                            channel: id, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID))
                default:
                    if frame.channel == id, let replyID = reply.replyID, method.replies.contains(replyID) {
                        return reply
                    }
                }
            }
            handle(frame)
            flushOutbound()
            if let attemptFailure { throw .connection(attemptFailure) }
        }
    }
}
