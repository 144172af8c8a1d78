#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DequeModule
import Logging
import Synchronization
import Tracing

/// The part of a connection that any task may touch: the mailbox of commands for the I/O
/// thread (``MailboxState``, behind a lock), the wake-up pipe, and the connection's events.
///
/// Everything that touches librabbitmq lives in ``IOLoop``, on its own thread. The decisions
/// are ``MailboxState``'s; this type carries out the actions it returns.
final class ConnectionCore: Sendable {
    let configuration: AMQPConnection.Configuration
    let logger: Logger
    /// The tracer spans go to; `nil` when none is set up, so that tracing costs one check.
    let tracer: (any Tracer)?
    /// The messaging metrics; `nil` when no metrics backend is set up.
    let metrics: MessagingMetrics?
    /// The broker the connection is on, for spans' `server.address` and `server.port`.
    private let currentEndpoint = Mutex<(endpoint: AMQPConnection.Configuration.Endpoint, serverProperties: AMQPFieldTable)?>(nil)
    private let state = Mutex(MailboxState())
    private let wakeReadFD: Int32
    private let wakeWriteFD: Int32
    /// Written once, when the application closes the connection, and never drained: a write
    /// stalled on a broker that does not read watches it (see ``FrameWriter/WriteLimits``).
    private let closeSignalReadFD: Int32
    private let closeSignalWriteFD: Int32
    /// The socket the I/O thread blocks on while it connects, logs in or restores a recovered
    /// connection (librabbitmq's blocking calls, which watch nothing else), and whether close
    /// was asked for. ``beginClose()`` shuts that socket down, so those calls fail at once
    /// instead of waiting out their timeouts. The I/O thread clears it, under this lock, before
    /// the socket is closed: a number that was reused is never shut down.
    private let blockingSocket = Mutex<(socket: Int32?, closing: Bool)>((nil, false))
    private let consumerTagCounter = Atomic<UInt64>(0)
    /// Whether `jobs` may hold something: the I/O thread checks it every turn without the lock.
    private let jobsPending = Atomic<Bool>(false)
    let directPublisher = DirectPublisher()

    init(
        configuration: AMQPConnection.Configuration, logger: Logger, tracer: (any Tracer)? = nil,
        metrics: MessagingMetrics? = nil
    ) throws(AMQPError) {
        self.configuration = configuration
        self.logger = logger
        self.tracer = tracer
        self.metrics = metrics
        func makePipe() throws(AMQPError) -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else {
                throw AMQPError(code: .library, message: "could not create the I/O thread's wake-up pipe (errno \(errno))")
            }
            for fd in fds {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
            return (fds[0], fds[1])
        }
        (wakeReadFD, wakeWriteFD) = try makePipe()
        do {
            (closeSignalReadFD, closeSignalWriteFD) = try makePipe()
        } catch {
            close(wakeReadFD)
            close(wakeWriteFD)
            throw error
        }
    }

    deinit {
        for fd in [wakeReadFD, wakeWriteFD, closeSignalReadFD, closeSignalWriteFD] { close(fd) }
    }

    /// Readable once ``beginClose()`` ran.
    var closeSignalFileDescriptor: Int32 { closeSignalReadFD }

    /// The I/O thread is about to block on `socket` (connecting, logging in, restoring), or is
    /// done with it (`nil`, always before the socket closes). A socket registered after close
    /// was asked for is shut down at once.
    func setBlockingSocket(_ socket: Int32?) {
        blockingSocket.withLock { state in
            state.socket = socket
            if state.closing, let socket { _ = shutdown(socket, Int32(SHUT_RDWR)) }
        }
    }

    var wakeFileDescriptor: Int32 { wakeReadFD }

    private func perform(_ action: MailboxState.WakeAction) {
        guard action == .wakeIOThread else { return }
        var byte: UInt8 = 1
        _ = write(wakeWriteFD, &byte, 1)
    }

    private func resume(_ waiters: [MailboxState.PublishWaiter]) {
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Any task

    func submit(_ command: Command) throws(AMQPError) {
        perform(try state.withLock { state throws(AMQPError) in try state.submit(command) })
    }

    /// Submits a command that carries a continuation; a refused command fails it instead of throwing.
    func submitOrFail(_ command: Command) {
        do {
            try submit(command)
        } catch {
            command.fail(error)
        }
    }

    /// Publishes a message: straight to the socket when it is sporadic and the I/O thread is
    /// idle (see ``DirectPublisher``), else through the I/O thread. Suspends while more than
    /// `publishBufferLimit` bytes are waiting for the I/O thread, so a fast publisher cannot grow
    /// memory without bound.
    func submitPublish(_ request: PublishRequest, on channel: AMQPChannel) async throws(AMQPError) {
        let limit = configuration.publishBufferLimit
        let now = ContinuousClock.now
        let action = try state.withLock { state throws(AMQPError) in
            // Confirm mode is set before confirm.select is queued (the channel's lock inside this one).
            try state.routePublish(channel.ref, request, at: now, bufferLimit: limit) { !channel.isConfirmMode }
        }
        switch action {
        case .writeDirectly(let transport, let frameMax):
            let outcome = directPublisher.write(request, channel: channel.id, transport: transport, frameMax: frameMax)
            let leftRemainder = if case .remainder = outcome { true } else { false }
            perform(state.withLock { $0.directPublishEnded(leftRemainder: leftRemainder) })
            if case .failed(let status) = outcome { throw .unencodable(status) }
        case .queued(let wake, let waitForRoom):
            perform(wake)
            if waitForRoom {
                do {
                    try await waitForPublishCapacity()
                } catch where error.code == .cancelled {
                    // The message is queued already: it goes out. Only the wait for room ends.
                }
            }
        }
    }

    private func waitForPublishCapacity() async throws(AMQPError) {
        try await withCancellableContinuation { (continuation: CancellableContinuation<Void>) in
            let limit = configuration.publishBufferLimit
            switch state.withLock({ $0.waitForRoom(continuation, bufferLimit: limit) }) {
            case .proceed: continuation.resume()
            case .wait: break
            case .fail(let error): continuation.resume(throwing: error)
            }
        }
    }

    /// Asks the I/O thread to close the connection gracefully. Idempotent.
    ///
    /// The connection refuses new work at once; the thread finishes by itself within
    /// ``AMQPConnection/Configuration/closeTimeout`` (a socket it blocks on is shut down, a
    /// stalled write gives up). Whoever waits for the end bounds the wait itself
    /// (``waitUntilClosedAfterClosing()``).
    func beginClose() {
        guard let action = state.withLock({ $0.beginClose() }) else { return }
        var signal: UInt8 = 1
        _ = write(closeSignalWriteFD, &signal, 1)
        blockingSocket.withLock { state in
            state.closing = true
            if let socket = state.socket { _ = shutdown(socket, Int32(SHUT_RDWR)) }
        }
        perform(action)
    }

    /// Beyond ``AMQPConnection/Configuration/closeTimeout``: time for the I/O thread to notice
    /// the close and tear down once the broker's confirmation is overdue.
    static let closeGrace = Duration.milliseconds(500)

    /// Waits until the I/O thread has finished. Returns the error that ended the connection,
    /// or `nil` when the application closed it; throws ``AMQPError/Code/cancelled`` as soon as
    /// the task is cancelled.
    func waitUntilClosed() async throws(AMQPError) -> AMQPError? {
        try await withCancellableContinuation { (continuation: CancellableContinuation<AMQPError?>) in
            if let ended = state.withLock({ $0.waitUntilClosed(continuation) }) {
                continuation.resume(returning: ended)
            }
        }
    }

    /// After ``beginClose()``: waits until the I/O thread has finished, for at most
    /// ``AMQPConnection/Configuration/closeTimeout`` and a grace period, or until the task is
    /// cancelled. Returns the error that ended the connection, if it ended in time with one.
    func waitUntilClosedAfterClosing() async -> AMQPError? {
        let ended = await awaitAtMost(configuration.closeTimeout + Self.closeGrace) { () async -> AMQPError? in
            do {
                return try await self.waitUntilClosed()
            } catch {
                return nil  // cancelled: stop waiting
            }
        }
        return ended ?? nil
    }

    var isOpen: Bool { state.withLock { $0.refusal == nil } }

    var isRecovering: Bool { state.withLock { $0.recovering } }

    /// Whether the application closed the connection (rather than it failing).
    var isClosedByApplication: Bool { state.withLock { $0.refusal == .connectionClosedByApplication } }

    /// Why the broker blocked publishing on this connection (a memory or disk alarm), or `nil`.
    var blockedReason: String? { state.withLock { $0.blockedReason } }

    func makeConsumerTag(channel: UInt16) -> String {
        let number = consumerTagCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return "amqp-swift.\(channel).\(number)"
    }

    // MARK: Events

    /// How many events a subscriber that does not keep up may have waiting; the oldest go first.
    static let eventBufferLimit = 256

    /// A new stream of the connection's events; it ends after `.closed`.
    func events() -> AsyncStream<AMQPConnection.Event> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: AMQPConnection.Event.self, bufferingPolicy: .bufferingNewest(Self.eventBufferLimit))
        let (id, blockedReason, final) = state.withLock { state in
            (state.subscribe(continuation), state.blockedReason, state.final)
        }
        if let id {
            continuation.onTermination = { [weak self] _ in
                self?.state.withLock { $0.unsubscribe(id) }
            }
            if let blockedReason { continuation.yield(.blocked(reason: blockedReason)) }
        } else if let final {
            continuation.yield(.closed(final.byApplication ? nil : final.error))
            continuation.finish()
        }
        return stream
    }

    func emit(_ event: AMQPConnection.Event) {
        for subscriber in state.withLock({ $0.subscribers }) { subscriber.yield(event) }
    }

    // MARK: I/O thread

    /// Moves the queued commands to the end of `batch` and releases waiting publishers.
    func takeCommands(into batch: inout Deque<Command>) {
        let limit = configuration.publishBufferLimit
        resume(state.withLock { $0.takeCommands(into: &batch, bufferLimit: limit) })
    }

    /// Has the I/O thread run its loop once more (a consumer took enough from a full buffer).
    func wakeIOThread() {
        perform(state.withLock { $0.requestLookAgain() })
    }

    /// While recovering: the commands that can complete without the broker.
    func takeCommandsNeedingNoBroker() -> [Command] {
        state.withLock { $0.takeCommandsNeedingNoBroker() }
    }

    /// Bytes of publishes waiting for the I/O thread, and held back while the broker blocks.
    var publishBufferBytes: Int {
        state.withLock { $0.queuedPublishBytes + $0.heldPublishBytes }
    }

    /// Publishes held back while the connection is blocked still count against the buffer limit.
    func setHeldPublishBytes(_ bytes: Int) {
        let limit = configuration.publishBufferLimit
        resume(state.withLock { $0.setHeldPublishBytes(bytes, bufferLimit: limit) })
    }

    /// Marks the I/O thread as about to sleep, unless commands are already waiting.
    /// `settlementsMayWait`: it sleeps briefly, and settlements need not wake it.
    func prepareToSleep(settlementsMayWait: Bool) -> Bool {
        state.withLock { $0.prepareToSleep(settlementsMayWait: settlementsMayWait) }
    }

    /// The I/O thread woke: waits for a direct publish in progress to finish, and returns
    /// whether one left bytes that the I/O thread must write before anything else.
    @discardableResult
    func didWake(drainWakePipe: Bool) -> Bool {
        var action = state.withLock { $0.ioThreadWoke() }
        while action == .waitForDirectPublish {
            // A direct publish takes microseconds (encode, one non-blocking send): wait it out.
            sched_yield()
            action = state.withLock { $0.ioThreadWoke() }
        }
        if drainWakePipe {
            var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            while withUnsafeMutableBytes(of: &buffer, { read(wakeReadFD, $0.baseAddress, $0.count) }) > 0 {}
        }
        return action == .awake(flushRemainder: true)
    }

    /// A connection is open on `transport`; direct publishes may use it while the thread sleeps.
    func connectionOpened(
        transport: Transport, frameMax: Int, endpoint: AMQPConnection.Configuration.Endpoint,
        serverProperties: AMQPFieldTable
    ) {
        state.withLock { $0.connectionOpened(transport: transport, frameMax: frameMax) }
        currentEndpoint.withLock { $0 = (endpoint, serverProperties) }
    }

    /// The broker the connection is (or was last) on.
    var endpoint: AMQPConnection.Configuration.Endpoint? { currentEndpoint.withLock { $0?.endpoint } }

    /// What that broker said about itself in `connection.start`.
    var serverProperties: AMQPFieldTable { currentEndpoint.withLock { $0?.serverProperties ?? [:] } }

    /// The socket is about to close (the I/O thread is awake, so no direct publish is in progress).
    func connectionClosing() {
        state.withLock { $0.connectionClosing() }
        directPublisher.discard()
    }

    func setBlocked(_ reason: String?) {
        let subscribers = state.withLock { state in
            state.setBlocked(reason)
            return state.subscribers
        }
        for subscriber in subscribers { subscriber.yield(reason.map { .blocked(reason: $0) } ?? .unblocked) }
    }

    func setRecovering(_ recovering: Bool) {
        state.withLock { $0.recovering = recovering }
    }

    /// Waits on the wake-up pipe for at most `timeout`; returns early when something was written
    /// to it. (No direct publish happens meanwhile: the connection is recovering.)
    func waitForWakeUp(timeout: Duration) {
        var fd = pollfd(fd: wakeReadFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&fd, 1, Int32(clamping: max(0, timeout.milliseconds)))
        didWake(drainWakePipe: fd.revents != 0)
    }

    /// Moves the jobs enqueued so far to `batch` (which is empty).
    func takeJobs(into batch: inout Deque<UnownedJob>) {
        // A job enqueued just after this check keeps the thread from sleeping (prepareToSleep)
        // and is taken on the next turn.
        guard jobsPending.load(ordering: .acquiring) else { return }
        state.withLock { state in
            swap(&batch, &state.jobs)
            jobsPending.store(false, ordering: .relaxed)
        }
    }

    /// As the I/O thread ends: from now on jobs go to the global executor. Returns those that
    /// were still waiting, for the caller to hand on there too.
    func stopExecutor() -> Deque<UnownedJob> {
        state.withLock { $0.stopExecutor() }
    }

    /// Refuses new commands from now on with `error` (unless already refusing).
    func refuse(_ error: AMQPError) {
        state.withLock { $0.refuse(error) }
    }

    /// Records the end of the connection and releases everyone waiting on it. Returns the
    /// commands that were never processed, which the caller fails.
    func finish(error: AMQPError, byApplication: Bool) -> Deque<Command> {
        let leftovers = state.withLock { $0.finish(error: error, byApplication: byApplication) }
        for waiter in leftovers.publishWaiters { waiter.resume(throwing: error) }
        for waiter in leftovers.closeWaiters { waiter.resume(returning: byApplication ? nil : error) }
        for subscriber in leftovers.subscribers {
            subscriber.yield(.closed(byApplication ? nil : error))
            subscriber.finish()
        }
        return leftovers.commands
    }
}

/// The I/O thread runs the jobs of tasks that prefer it between reading frames and sleeping,
/// so a consumer whose task prefers it gets each delivery without waking another thread.
extension ConnectionCore: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let route = state.withLock { state in
            let route = state.enqueue(job)
            if route != .runElsewhere { jobsPending.store(true, ordering: .releasing) }
            return route
        }
        switch route {
        case .queued: break
        case .queuedWakeIOThread: perform(.wakeIOThread)
        case .runElsewhere: globalConcurrentExecutor.enqueue(ExecutorJob(job))
        }
    }
}
