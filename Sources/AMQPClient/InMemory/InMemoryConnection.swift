#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DequeModule
public import Logging

extension AMQPConnection {
    /// Opens a connection to an in-process ``InMemoryBroker``, for tests: everything above the
    /// socket is the real client's (channels, confirms, consumers, the task executor), and no
    /// RabbitMQ is needed. Recovery does not apply: an in-memory connection is never lost.
    public static func connect(
        to broker: InMemoryBroker, configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "amqp-client")
    ) async throws(AMQPError) -> AMQPConnection {
        var configuration = configuration
        configuration.recovery = .disabled
        try configuration.validate()
        var logger = logger
        logger[metadataKey: LoggingKeys.connection] = "\(configuration.connectionName ?? "in-memory-\(nextConnectionNumber())")"
        let core = try ConnectionCore(configuration: configuration, logger: logger, tracer: nil, metrics: nil)
        try InMemoryConnection.start(core: core, broker: broker)
        return AMQPConnection(core: core)
    }
}

/// The in-memory connection's own thread: it takes the commands tasks queue, as ``IOLoop``
/// does, and carries them out on the ``InMemoryBroker``'s state instead of a socket. It also runs
/// the jobs of tasks that prefer the connection's executor, and wakes for message expiry.
final class InMemoryConnection {
    let core: ConnectionCore
    let broker: InMemoryBroker
    let id: Int
    private var batch: Deque<Command> = []
    private var jobs: Deque<UnownedJob> = []
    private var nextChannel: UInt16 = 1
    private var nextEpoch: UInt32 = 0
    private var finished = false

    private init(core: ConnectionCore, broker: InMemoryBroker) {
        self.core = core
        self.broker = broker
        self.id = broker.state.withLock { state in
            let id = state.nextConnectionID
            state.nextConnectionID += 1
            state.connections[id] = InMemoryConnectionState(core: core)
            return id
        }
    }

    static func start(core: ConnectionCore, broker: InMemoryBroker) throws(AMQPError) {
        let connection = InMemoryConnection(core: core, broker: broker)
        let unmanaged = Unmanaged.passRetained(connection)
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t? = nil
        #endif
        let status = pthread_create(
            &thread, nil,
            { context in
                let connection = Unmanaged<InMemoryConnection>.fromOpaque(context!).takeRetainedValue()
                connection.run()
                return nil
            }, unmanaged.toOpaque())
        guard status == 0 else {
            unmanaged.release()
            throw AMQPError(code: .library, message: "could not start the in-memory connection's thread (error \(status))")
        }
        #if canImport(Glibc)
        pthread_detach(thread)
        #else
        pthread_detach(thread!)
        #endif
    }

    private func run() {
        ThreadName.set("amqp-in-memory")
        defer { for job in core.stopExecutor() { globalConcurrentExecutor.enqueue(ExecutorJob(job)) } }
        while !finished {
            core.takeCommands(into: &batch)
            while let command = batch.popFirst() {
                if finished {
                    command.fail(.connectionClosedByApplication)
                } else {
                    run(command)
                }
            }
            runJobs()
            if finished { break }
            let nextExpiry = broker.state.withLock { state -> ContinuousClock.Instant? in
                state.expireDue()
                return state.manualNow == nil ? state.nextExpiry : nil
            }
            guard core.prepareToSleep(settlementsMayWait: false) else { continue }
            var timeout = Duration.seconds(1)
            if let nextExpiry { timeout = max(.zero, min(timeout, ContinuousClock.now.duration(to: nextExpiry))) }
            core.waitForWakeUp(timeout: timeout + .milliseconds(1))
        }
    }

    private func runJobs() {
        core.takeJobs(into: &jobs)
        let executor = core.asUnownedTaskExecutor()
        while let job = jobs.popFirst() { job.runSynchronously(on: executor) }
    }

    // MARK: Commands

    private func run(_ command: Command) {
        switch command {
        case .openChannel(let continuation):
            nextEpoch &+= 1
            let channelID = nextChannel
            nextChannel &+= 1
            if nextChannel == 0 { nextChannel = 1 }
            let handle = AMQPChannel(core: core, ref: ChannelRef(id: channelID, epoch: nextEpoch))
            broker.state.withLock { $0.connections[id]?.channels[channelID] = InMemoryChannelState(handle: handle) }
            continuation.resume(returning: handle)
        case .call(let ref, let method, let continuation):
            let result = broker.state.withLock { state -> Result<ServerMethod, AMQPError> in
                guard isCurrent(ref, in: state) else { return .failure(closedError(ref)) }
                do throws(ChannelRefusal) {
                    return .success(try state.call(method, connection: id, channel: ref.id))
                } catch {
                    let failure = error.error(channel: ref.id)
                    state.closeChannel(ref.id, connection: id, error: failure)
                    return .failure(failure)
                }
            }
            continuation.resume(with: result.mapError { $0 })
        case .publish(let ref, let request):
            let outcome = broker.state.withLock { state -> Result<Bool, AMQPError> in
                guard isCurrent(ref, in: state) else { return .failure(closedError(ref)) }
                do throws(ChannelRefusal) {
                    return .success(try state.publish(request, connection: id, channel: ref.id))
                } catch {
                    let failure = error.error(channel: ref.id)
                    state.closeChannel(ref.id, connection: id, error: failure)
                    return .failure(failure)
                }
            }
            switch outcome {
            case .success(let routed):
                if !routed && request.mandatory {
                    request.confirm?.markReturned(
                        AMQPError(
                            code: .messageReturned,
                            message: "the broker returned the message: no queue took it from exchange \"\(request.exchange)\" with routing key \"\(request.routingKey)\"",
                            replyCode: 312, replyText: "NO_ROUTE"))
                }
                request.confirm?.resolve(acked: true)
            case .failure(let error):
                request.confirm?.fail(.outcomeUnknown(error))
            }
        case .settle(let ref, let generation, let method):
            broker.state.withLock { state in
                guard isCurrent(ref, in: state), state.connections[id]?.channels[ref.id]?.handle.generation == generation else { return }
                if let refusal = state.settle(method, connection: id, channel: ref.id) {
                    state.closeChannel(ref.id, connection: id, error: refusal.error(channel: ref.id))
                }
            }
        case .consume(let ref, let method, let stream, let continuation):
            guard case .basicConsume(let queue, let tag, let noAck, _, _) = method else { return }
            let result = broker.state.withLock { state -> Result<ServerMethod, AMQPError> in
                guard isCurrent(ref, in: state) else { return .failure(closedError(ref)) }
                do throws(ChannelRefusal) {
                    return .success(try state.consume(queue: queue, tag: tag, noAck: noAck, stream: stream, connection: id, channel: ref.id))
                } catch {
                    let failure = error.error(channel: ref.id)
                    state.closeChannel(ref.id, connection: id, error: failure)
                    return .failure(failure)
                }
            }
            if case .failure(let error) = result { stream.finish(error) }
            continuation.resume(with: result.mapError { $0 })
        case .stopConsumer(let ref, let stream, let requeue, let continuation):
            broker.state.withLock { state in
                guard isCurrent(ref, in: state) else { return }
                state.cancel(tag: stream.consumerTag, requeue: requeue, connection: id, channel: ref.id)
            }
            stream.finish(nil)
            continuation?.resume(returning: .ok(.basicCancelOk))
        case .closeChannel(let ref, let continuation):
            broker.state.withLock { state in
                guard isCurrent(ref, in: state) else { return }
                state.closeChannel(ref.id, connection: id, error: nil)
            }
            continuation.resume(returning: .ok(.channelCloseOk))
        case .closeConnection:
            finished = true
            broker.state.withLock { $0.closeConnection(id) }
            core.refuse(.connectionClosedByApplication)
            for command in core.finish(error: .connectionClosedByApplication, byApplication: true) {
                command.fail(.connectionClosedByApplication)
            }
        }
    }

    /// Whether `ref` is the channel opening the broker knows (not one closed meanwhile).
    private func isCurrent(_ ref: ChannelRef, in state: BrokerState) -> Bool {
        state.connections[id]?.channels[ref.id]?.handle.ref.epoch == ref.epoch
    }

    private func closedError(_ ref: ChannelRef) -> AMQPError {
        AMQPError(code: .channelClosed, message: "channel \(ref.id) is closed")
    }
}
