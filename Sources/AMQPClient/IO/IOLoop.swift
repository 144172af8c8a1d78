#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DequeModule
import Logging

/// Runs a connection on a dedicated thread, the only one that touches its
/// ``LibRabbitMQConnection``: librabbitmq is not thread-safe and sends heartbeats only while
/// it is called, so one thread runs commands, reads every frame, and keeps the
/// heartbeat going whether the application is idle or busy. No Swift concurrency
/// thread ever blocks on the socket.
///
/// The loop never uses librabbitmq's blocking RPC helpers: it sends methods and
/// matches replies itself, so a slow reply on one channel never stalls another.
final class IOLoop {
    let core: ConnectionCore
    var logger: Logger
    /// The open connection; `nil` between a loss and the next successful connect.
    var connection: LibRabbitMQConnection?
    var channels: [UInt16: ChannelIO] = [:] {
        didSet { lastFrameChannel = nil }
    }
    /// The channel the last frame was for: a message's frames come one after another on one channel.
    private var lastFrameChannel: ChannelIO?
    /// What the application declared, for recovery to declare again.
    let topology = Topology()
    var nextEpoch: UInt32 = 0
    var nextConsumerOrder: UInt64 = 0
    var batch: Deque<Command> = []
    /// Open, closing, recovering or closed: what the connection as a whole does next is decided there.
    var machine: ConnectionStateMachine
    /// The earliest deadline of a channel close waiting for the broker's `close-ok`.
    var channelCloseDeadline: ContinuousClock.Instant?
    /// When a frame last arrived.
    var lastFrameAt = ContinuousClock.now
    /// A channel close went unanswered for ``AMQPConnection/Configuration/closeTimeout`` and
    /// nothing at all arrived meanwhile: the broker is not answering. Later closes (of the
    /// other channels, of the connection) then do not wait for it again, so closing a service's
    /// channels and then its connection takes one `closeTimeout`, not one each. Over as soon as
    /// a frame arrives (derived, so the read path stores nothing more per frame).
    var unansweredCloseAt: ContinuousClock.Instant?
    var brokerUnresponsive: Bool { unansweredCloseAt.map { lastFrameAt <= $0 } ?? false }
    /// The earliest deadline of a call waiting for its reply (``AMQPConnection/Configuration/callTimeout``).
    var callDeadline: ContinuousClock.Instant?
    // Read on every turn of the loop: the machine's phase, a stored field, not a copy of its state.
    var finished: Bool { machine.phase == .closed }
    var recovering: Bool { machine.phase == .recovering }
    var closingConnection: Bool { machine.phase == .closing }
    var startContinuation: CheckedContinuation<Void, any Error>?

    // Commands and settlement
    var finalError: AMQPError?
    /// Why each closed channel number last closed: a command already queued when the broker
    /// closed its channel fails with the broker's reason, not a generic one.
    var closeReasons: [UInt16: (epoch: UInt32, error: AMQPError)] = [:]
    /// Channels that hold back an ack (see ``Settlements``), to send at the end of the batch.
    var channelsWithHeldAck: [ChannelIO] = []

    // While the broker blocks publishing
    /// The broker blocked publishing (a memory or disk alarm); see ``HeldCommands``.
    var blocked: Bool { blockedSince != nil }
    /// Since when the broker blocks publishing (for `amqp.client.blocked.duration`).
    var blockedSince: ContinuousClock.Instant?
    var held = HeldCommands()

    // Reading
    /// The last poll found the socket readable.
    var socketReadable = false
    /// When librabbitmq must next be called even with nothing to read (it sends heartbeats and
    /// notices a silent peer only inside its read calls), and how long the thread may sleep.
    var heartbeats = HeartbeatSchedule(seconds: 0, openedAt: .now)
    /// At most this many frames are handled before queued commands (acks, publishes) get a turn.
    static let frameBudget = 256
    /// Consumers whose waiting iterator gets its deliveries once the current batch is read, or
    /// later when the batch is held back (see ``AMQPConnection/Configuration/DeliveryBatching``),
    /// with the largest batch worth holding for each.
    var streamsToWake: [(stream: ConsumerStream, batchLimit: Int)] = []
    /// When the earliest batch held back must be handed over.
    var heldBatchDeadline: ContinuousClock.Instant?
    /// Whether the socket is read: not while a consumer's buffer is full (see ``ConsumerFlowControl``).
    var flowControl = ConsumerFlowControl()
    /// When the application last acked, nacked or rejected a delivery.
    var lastSettlementAt = ContinuousClock.now - .seconds(1)

    /// Messages sent and consumed since the last report (see ``MessagingMetrics``).
    var messageCounts = MessageCounts()
    /// Health events since the last report, and the gauges last reported (see ``ClientHealthMetrics``).
    var healthCounts = ClientHealthCounts()
    /// When the gauges are next sampled.
    var nextGaugeSample = ContinuousClock.now

    /// Lines a misbehaving broker could repeat without end are written at most every 10 s.
    var logLimiter = LogRateLimiter()

    // Running tasks (see ``AMQPConnection/taskExecutor``)
    var jobBatch: Deque<UnownedJob> = []
    var lastLongJobWarning: ContinuousClock.Instant?

    private init(core: ConnectionCore) {
        self.core = core
        self.logger = core.logger
        self.machine = ConnectionStateMachine(
            configuration: .init(recovery: core.configuration.recovery, closeTimeout: core.configuration.closeTimeout))
    }

    /// Starts the I/O thread and returns once the connection is open (or throws why it could not
    /// be). Cancelling the task closes the connection, which ends a connect or login under way
    /// at once, and throws ``AMQPError/Code/cancelled``.
    static func start(core: ConnectionCore) async throws(AMQPError) {
        let loop = IOLoop(core: core)
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    loop.startContinuation = continuation
                    let unmanaged = Unmanaged.passRetained(loop)
                    if let error = startThread(unmanaged.toOpaque()) {
                        unmanaged.release()
                        continuation.resume(throwing: error)
                    }
                }
            } onCancel: {
                core.beginClose()
            }
        } catch {
            if Task.isCancelled { throw .cancelledWait }
            throw AMQPError.wrap(error)
        }
        if Task.isCancelled { throw .cancelledWait }  // opened, but closing already
    }

    static func startThread(_ context: UnsafeMutableRawPointer) -> AMQPError? {
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t? = nil
        #endif
        // An explicit stack: platform defaults range from 512 KiB to 8 MiB, and the thread runs
        // librabbitmq's decoders (bounded by the frame scanner's depth limit) and the jobs of
        // tasks that prefer the connection's executor.
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setstacksize(&attributes, Self.threadStackSize)
        let status = pthread_create(
            &thread, &attributes,
            { context in
                let loop = Unmanaged<IOLoop>.fromOpaque(context!).takeRetainedValue()
                loop.threadMain()
                return nil
            }, context)
        guard status == 0 else {
            return AMQPError(code: .library, message: "could not start the connection's I/O thread (error \(status))")
        }
        #if canImport(Glibc)
        pthread_detach(thread)
        #else
        pthread_detach(thread!)
        #endif
        return nil
    }

    /// The I/O thread's stack size.
    static let threadStackSize = 8 << 20

    func threadMain() {
        ThreadName.set("amqp-io")
        // Tasks that still prefer this thread when it ends go on without it.
        defer { for job in core.stopExecutor() { globalConcurrentExecutor.enqueue(ExecutorJob(job)) } }
        do {
            try openAnyEndpoint()
        } catch {
            for command in core.finish(error: error, byApplication: false) { command.fail(error) }
            startContinuation?.resume(throwing: error)
            startContinuation = nil
            return
        }
        machine.connected(at: .now)
        startContinuation?.resume()
        startContinuation = nil
        runLoop()
    }

    /// The channel numbered `id`, for a frame that arrived on it.
    func channel(forFrameOn id: UInt16) -> ChannelIO? {
        if let lastFrameChannel, lastFrameChannel.id == id { return lastFrameChannel }
        lastFrameChannel = channels[id]
        return lastFrameChannel
    }

    // MARK: The loop

    func runLoop() {
        while !finished {
            if recovering {
                runRecoveryTurn()
                continue
            }
            runCommands()
            if !finished && !recovering {
                readFrames()
                wakeStreams()
                flushOutbound()  // acks, requeues and close-oks the frames called for
            }
            if !finished { runJobs() }  // tasks that prefer this thread, resumed by those frames
            if !finished, let metrics = core.metrics { reportGaugesIfDue(metrics) }
            if !finished && !recovering { checkDeadlines() }
            if !finished && !recovering { waitForWork() }
        }
    }

    /// How long a write may make no progress before the peer counts as dead (it stopped
    /// reading): ``AMQPConnection/Configuration/writeTimeout``, or two heartbeat intervals
    /// (librabbitmq's own rule for a silent peer) if sooner; once the application closes the
    /// connection, at most ``AMQPConnection/Configuration/closeTimeout``.
    var writeLimits: FrameWriter.WriteLimits {
        let configuration = core.configuration
        return FrameWriter.WriteLimits(
            stall: heartbeats.writeStallLimit(writeTimeout: configuration.writeTimeout),
            closeSignal: core.closeSignalFileDescriptor, afterClose: configuration.closeTimeout)
    }

    func waitForWork() {
        guard let connection else { return }
        let readingPaused = flowControl.isPaused
        if connection.hasBufferedInput && !readingPaused { return }
        if !blocked && !held.isEmpty { return }  // unblocked: release the held publishes first
        let settlementsMayWait = settlementsCanWait()
        guard core.prepareToSleep(settlementsMayWait: settlementsMayWait) else { return }
        let socket = connection.socket
        guard socket >= 0 else {
            core.didWake(drainWakePipe: true)
            lost(.connectionLost(.socketClosed))
            return
        }
        // A tuple, not an array: no allocation each time the thread sleeps.
        var fds = (
            pollfd(fd: readingPaused ? -1 : socket, events: Int16(POLLIN), revents: 0),  // poll skips -1
            pollfd(fd: core.wakeFileDescriptor, events: Int16(POLLIN), revents: 0)
        )
        var timeout = Int64(settlementsMayWait ? 1 : pollTimeoutMilliseconds()) * 1000
        if let heldBatchDeadline {
            timeout = min(timeout, max(0, ContinuousClock.now.duration(to: heldBatchDeadline).microseconds))
        }
        SocketWait.wait(&fds, microseconds: timeout)
        socketReadable = fds.0.revents != 0  // data, or an error or hang-up for librabbitmq to report
        if core.didWake(drainWakePipe: fds.1.revents != 0) {
            // What a direct publish left on the socket's doorstep goes before anything else.
            do {
                try connection.flushRemainder(of: core.directPublisher, limits: writeLimits)
            } catch {
                lost(error)
            }
        }
    }

    /// Whether acks may wait up to a millisecond for the I/O thread to wake by itself. Only
    /// while a consumer is acking right now (a millisecond poll costs nothing then), and not
    /// with a small prefetch: there the broker waits for each ack before it delivers more,
    /// while a prefetch of hundreds keeps it busy for far longer than a millisecond.
    func settlementsCanWait() -> Bool {
        guard ContinuousClock.now - lastSettlementAt < .milliseconds(5) else { return false }
        var waiting = false
        for channel in channels.values where channel.settlements.unsettledCount > 0 {
            if channel.prefetch.values.contains(where: { $0 > 0 && $0 < Self.smallPrefetch }) { return false }
            waiting = true
        }
        return waiting
    }

    static let smallPrefetch: UInt16 = 100

    /// Wakes in time to send a heartbeat (librabbitmq sends one only when called) and to
    /// notice a close or a call that took too long.
    func pollTimeoutMilliseconds() -> Int32 {
        heartbeats.sleepMilliseconds(
            at: .now,
            deadlines: [machine.phase == .open ? nil : machine.nextDeadline, channelCloseDeadline, callDeadline, core.metrics == nil ? nil : nextGaugeSample])
    }

    /// Fails the calls that waited past ``AMQPConnection/Configuration/callTimeout`` and closes
    /// their channels: a reply that comes later would be taken for the next call's.
    func checkCallDeadlines() {
        let now = ContinuousClock.now
        guard let callDeadline, now >= callDeadline, let limit = core.configuration.callTimeout else { return }
        self.callDeadline = nil
        for channel in channels.values where channel.lifecycle.isOpen {
            if channel.pendingReplies.hasExpired(at: now) {
                let error = AMQPError.callTimedOut(channel: channel.id, after: limit)
                logger.warning("a call timed out; closing its channel", metadata: [LoggingKeys.channel: "\(channel.id)"])
                close(channel, because: error)
            } else if let deadline = channel.pendingReplies.earliestDeadline {
                self.callDeadline = min(self.callDeadline ?? deadline, deadline)
            }
        }
    }

    /// The deadline for a call made now, if calls have one.
    func deadlineForCall() -> ContinuousClock.Instant? {
        guard let limit = core.configuration.callTimeout else { return nil }
        let deadline = ContinuousClock.now + limit
        callDeadline = min(callDeadline ?? deadline, deadline)
        return deadline
    }

    /// Carries out what passed its deadline: the connection's close, channel closes and calls.
    func checkDeadlines() {
        let now = ContinuousClock.now
        // An open connection has no deadline of its own: skip the call on the hot path.
        if machine.phase != .open { carryOut(machine.tick(at: now)) }
        if !finished { checkChannelCloseDeadlines(at: now) }
        if !finished { checkCallDeadlines() }
    }

    func checkChannelCloseDeadlines(at now: ContinuousClock.Instant) {
        guard let deadline = channelCloseDeadline, now >= deadline else { return }
        channelCloseDeadline = nil
        for channel in channels.values {
            guard let deadline = channel.lifecycle.closeDeadline else { continue }
            let actions = channel.lifecycle.deadlinePassed(at: now)
            if actions.isEmpty {
                channelCloseDeadline = min(channelCloseDeadline ?? deadline, deadline)
                continue
            }
            // Nothing at all arrived since the close went out: later closes need not wait.
            if lastFrameAt < deadline - core.configuration.closeTimeout { unansweredCloseAt = now }
            apply(actions, to: channel)
        }
    }

    // MARK: Running tasks

    /// Runs the jobs enqueued so far by tasks that prefer this thread; those they enqueue in
    /// turn wait for the next turn of the loop, so frames and heartbeats are never shut out.
    func runJobs() {
        core.takeJobs(into: &jobBatch)
        guard !jobBatch.isEmpty else { return }
        let start = ContinuousClock.now
        let executor = core.asUnownedTaskExecutor()
        while let job = jobBatch.popFirst() { job.runSynchronously(on: executor) }
        let elapsed = ContinuousClock.now - start
        if elapsed >= Self.longJobBatch { warnAboutLongJobs(elapsed) }
    }

    /// Jobs that run this long hold up every channel's frames, and heartbeats.
    static let longJobBatch = Duration.milliseconds(100)

    func warnAboutLongJobs(_ elapsed: Duration) {
        let now = ContinuousClock.now
        if let last = lastLongJobWarning, now - last < .seconds(10) { return }
        lastLongJobWarning = now
        logger.warning(
            "code running on the connection's task executor held its I/O thread; move blocking or long work off it",
            metadata: [LoggingKeys.heldFor: "\(elapsed)"])
    }

    // MARK: Ending

    /// The connection failed without the application asking (unless it was closing anyway):
    /// the state machine decides whether it recovers, ends, or fails a recovery attempt.
    func lost(_ error: AMQPError) {
        carryOut(machine.lost(error, at: .now))
    }

    /// Carries out what the connection's state machine decided (see ``ConnectionStateMachine``).
    func carryOut(_ actions: [ConnectionStateMachine.Action]) {
        for action in actions {
            switch action {
            case .sendConnectionClose:
                for command in held.takeAll() { command.fail(.connectionClosedByApplication) }
                send(.connectionClose(replyCode: 200, replyText: "Goodbye"), on: 0)
            case .sendConnectionCloseOk:
                send(.connectionCloseOk, on: 0)
                flushOutbound()
            case .closeTimedOut:
                logger.warning("the broker did not confirm connection.close in time; dropped the socket")
            case .tearDown(let error, let byApplication):
                tearDown(error, byApplication: byApplication)
            case .beginRecovery(let error):
                beginRecovery(after: error)
            case .connect(let attempt, _):
                connectForRecovery(attempt: attempt)
            case .send(let step):
                // Only while the attempt still waits for it: an earlier action may have failed it.
                guard machine.recovery?.step == step else { continue }
                perform(step)
            case .sendChannelCloseOk(let id):
                send(.channelCloseOk, on: id)
            case .abandonChannel(let id, let error):
                logger.warning(
                    "could not restore a channel", metadata: [LoggingKeys.channel: "\(id)", LoggingKeys.error: .untrusted(error)])
                if let channel = channels[id] { apply(channel.lifecycle.brokerClosed(error, answered: true), to: channel) }
            case .declarationRefused(let declaration, let error):
                logger.warning("could not restore \(declaration.description)", metadata: [LoggingKeys.error: .untrusted(error)])
            case .abandonConsumer(let id, let consumerTag, let error):
                abandonConsumer(consumerTag, on: id, because: error)
            case .renameQueue(let oldName, let newName):
                rename(queue: oldName, to: newName)
            case .attemptFailed(let attempt, let error):
                attemptFailed(attempt, error)
            case .recovered(let attempt):
                recovered(attempt: attempt)
            }
        }
    }

    /// Fails or ends everything that waits on this connection, frees librabbitmq's state, and
    /// stops the loop. The state machine asks for it once.
    func tearDown(_ error: AMQPError, byApplication: Bool) {
        finalError = error
        if !byApplication { logger.warning("connection ended", metadata: [LoggingKeys.error: .untrusted(error)]) }
        core.setRecovering(false)
        core.refuse(error)
        for channel in channels.values {
            apply(channel.lifecycle.connectionEnded(error, byApplication: byApplication), to: channel)
        }
        channels.removeAll()
        for command in held.takeAll() { command.fail(error) }
        destroyConnection()
        setBlocked(nil)
        if let metrics = core.metrics { reportMetrics(metrics, sampleGauges: true) }
        for command in core.finish(error: error, byApplication: byApplication) { command.fail(error) }
    }

    func destroyConnection() {
        core.setBlockingSocket(nil)  // before the socket closes
        core.connectionClosing()
        connection?.close()
        connection = nil
    }
}
