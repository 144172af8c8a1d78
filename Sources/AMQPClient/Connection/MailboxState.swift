import DequeModule

/// The part of a connection that tasks and the I/O thread share, as a value: the mailbox of
/// commands, the buffer limit on publishes, whether the I/O thread sleeps, the connection's
/// lifecycle. ``ConnectionCore`` keeps it behind a lock; each mutating method makes one
/// decision and returns what the caller must do outside the lock (wake the I/O thread, resume
/// these waiters, write directly, wait), so every route can be tested without a broker.
struct MailboxState {
    typealias PublishWaiter = CancellableContinuation<Void>
    typealias CloseWaiter = CancellableContinuation<AMQPError?>

    /// Whether the caller must write to the I/O thread's wake-up pipe.
    enum WakeAction: Equatable {
        case none
        case wakeIOThread
    }

    var commands: Deque<Command> = []
    /// Bytes of publishes waiting in `commands`; publishers wait while it is over the limit.
    private(set) var queuedPublishBytes = 0
    /// Bytes of publishes the I/O thread holds back while the broker blocks the connection.
    private(set) var heldPublishBytes = 0
    private var publishWaiters: [PublishWaiter] = []
    /// The I/O thread is (about to be) in `poll` and needs a byte on the pipe to wake.
    private(set) var ioSleeping = false
    /// Someone asked the I/O thread to look again (a consumer drained its buffer) while it was
    /// awake: it must not go to sleep before it has.
    private var lookAgain = false
    /// The I/O thread sleeps for at most a millisecond: an ack, nack or reject can wait for it
    /// to wake by itself, so a run of them costs one wake-up and one write.
    private var settlementsMayWait = false
    /// Once set, new commands are refused with this error.
    private(set) var refusal: AMQPError?
    /// Set when the I/O thread has finished; `byApplication` tells a requested close from a failure.
    private(set) var final: (error: AMQPError, byApplication: Bool)?
    private var closeWaiters: [CloseWaiter] = []
    private(set) var blockedReason: String?
    /// The I/O thread is reconnecting; commands wait in `commands` until it is done.
    var recovering = false
    private var eventSubscribers: [UInt64: AsyncStream<AMQPConnection.Event>.Continuation] = [:]
    private var nextSubscriber: UInt64 = 0

    // Direct publishes (see ``DirectPublisher``)
    /// The open connection's transport and frame_max; `nil` while there is none.
    private var transport: Transport?
    private var frameMax = 0
    /// A task is writing a direct publish; the I/O thread waits for it before it goes on.
    private var directClaimed = false
    /// A direct publish left bytes the I/O thread must write before anything else.
    private var directRemainder = false
    private var lastPublishAt = ContinuousClock.now

    // The connection as a task executor (see ``AMQPConnection/taskExecutor``)
    /// Jobs of tasks that prefer the I/O thread, for it to run between reads.
    var jobs: Deque<UnownedJob> = []
    /// The I/O thread has ended: jobs go to the global executor instead.
    private var executorStopped = false

    /// A publish that follows the previous one by more than this is sporadic: it goes straight
    /// to the socket when it can. Closer ones are batched by the I/O thread, fewer writes in all.
    static let sporadicPublishGap = Duration.microseconds(50)
    /// Larger bodies always go through the I/O thread: they are about throughput, and one that
    /// does not fit the socket buffer at once would leave most of itself for the I/O thread anyway.
    static let directPublishMaxBody = 16 * 1024

    /// What a publish counts against ``AMQPConnection/Configuration/publishBufferLimit``.
    static func publishCost(_ request: PublishRequest) -> Int {
        request.body.count + 256
    }

    /// Whoever queued work for the I/O thread calls this once: it must wake the thread when it
    /// sleeps, or waits between recovery attempts when `orRecovering`. Only the first caller
    /// after the thread went to sleep is told to.
    private mutating func takeWakeUp(orRecovering: Bool = false) -> WakeAction {
        defer { ioSleeping = false }
        return ioSleeping || (orRecovering && recovering) ? .wakeIOThread : .none
    }

    // MARK: Any task

    /// Queues a command. A settlement need not wake a thread that wakes by itself within a millisecond.
    mutating func submit(_ command: Command) throws(AMQPError) -> WakeAction {
        if let refusal { throw refusal }
        commands.append(command)
        if case .settle = command, settlementsMayWait { return .none }
        return takeWakeUp()
    }

    enum PublishAction: Equatable {
        /// Encode and write it from the publishing task: the I/O thread sleeps with nothing queued,
        /// so nothing can come before it. Call ``directPublishEnded(leftRemainder:)`` after.
        case writeDirectly(Transport, frameMax: Int)
        /// Queued for the I/O thread; `waitForRoom`: the buffer is over its limit.
        case queued(WakeAction, waitForRoom: Bool)
    }

    /// Routes a publish: straight to the socket when it is sporadic, small, needs no confirm and
    /// the I/O thread is idle; else through the I/O thread, which numbers confirms, holds
    /// publishes while the broker blocks the connection and keeps them until a recovery is done.
    ///
    /// `withoutConfirms` says whether the channel has never asked for confirm mode. It is asked
    /// last, under this lock: a publish without a tracker may still follow a `confirm.select` on
    /// the wire (another task enabled confirms meanwhile), and then only the I/O thread can give
    /// it its place in the confirm sequence.
    mutating func routePublish(
        _ channel: ChannelRef, _ request: PublishRequest, at now: ContinuousClock.Instant, bufferLimit: Int,
        withoutConfirms: () -> Bool = { true }
    ) throws(AMQPError) -> PublishAction {
        if let refusal { throw refusal }
        let sporadic = now - lastPublishAt > Self.sporadicPublishGap
        lastPublishAt = now
        if sporadic && request.confirm == nil && request.body.count <= Self.directPublishMaxBody
            && ioSleeping && commands.isEmpty && !directClaimed && !directRemainder && !recovering
            && blockedReason == nil && withoutConfirms(), let transport
        {
            directClaimed = true
            return .writeDirectly(transport, frameMax: frameMax)
        }
        commands.append(.publish(channel, request))
        queuedPublishBytes += Self.publishCost(request)
        return .queued(takeWakeUp(), waitForRoom: queuedPublishBytes + heldPublishBytes > bufferLimit)
    }

    /// A direct publish is written; bytes the socket did not take are the I/O thread's to write.
    mutating func directPublishEnded(leftRemainder: Bool) -> WakeAction {
        directClaimed = false
        guard leftRemainder else { return .none }
        directRemainder = true
        return takeWakeUp()
    }

    enum RoomAction {
        case proceed
        case fail(AMQPError)
        /// The waiter was kept; the I/O thread resumes it once the buffer drains.
        case wait
    }

    /// A publisher waits for the buffer to drain below `bufferLimit`.
    mutating func waitForRoom(_ waiter: PublishWaiter, bufferLimit: Int) -> RoomAction {
        if let refusal { return .fail(refusal) }
        if queuedPublishBytes + heldPublishBytes <= bufferLimit { return .proceed }
        publishWaiters.append(waiter)
        return .wait
    }

    /// The application asks to close. Returns `nil` when a close was already asked for.
    mutating func beginClose() -> WakeAction? {
        guard refusal == nil else { return nil }
        commands.append(.closeConnection)
        refusal = .connectionClosedByApplication
        return takeWakeUp(orRecovering: true)
    }

    /// Waits for the end of the connection, or returns how it ended (`.some(nil)`: closed by the
    /// application) when it has.
    mutating func waitUntilClosed(_ waiter: CloseWaiter) -> AMQPError?? {
        guard let final else {
            closeWaiters.append(waiter)
            return nil
        }
        return .some(final.byApplication ? nil : final.error)
    }

    /// Subscribes to the connection's events. Returns `false` when the connection has ended.
    mutating func subscribe(_ subscriber: AsyncStream<AMQPConnection.Event>.Continuation) -> UInt64? {
        guard final == nil else { return nil }
        let id = nextSubscriber
        nextSubscriber += 1
        eventSubscribers[id] = subscriber
        return id
    }

    mutating func unsubscribe(_ id: UInt64) {
        eventSubscribers[id] = nil
    }

    var subscribers: [AsyncStream<AMQPConnection.Event>.Continuation] { Array(eventSubscribers.values) }

    // MARK: I/O thread

    /// Moves the queued commands to the end of `batch`. Returns the publishers to resume.
    mutating func takeCommands(into batch: inout Deque<Command>, bufferLimit: Int) -> [PublishWaiter] {
        if batch.isEmpty {
            swap(&batch, &commands)
        } else {
            // Left over from a batch a connection loss interrupted: those go first.
            batch.append(contentsOf: commands)
            commands.removeAll()
        }
        queuedPublishBytes = 0
        return takePublishWaitersIfRoom(bufferLimit: bufferLimit)
    }

    /// While the connection recovers: takes out the commands that need no broker (closing a
    /// channel, stopping a consumer), so that they complete at once instead of waiting for a
    /// broker that may not come back. The rest keep their order and still count against the
    /// publish buffer.
    mutating func takeCommandsNeedingNoBroker() -> [Command] {
        guard commands.contains(where: \.needsNoBroker) else { return [] }
        var taken: [Command] = []
        var kept: Deque<Command> = []
        for command in commands {
            if command.needsNoBroker { taken.append(command) } else { kept.append(command) }
        }
        commands = kept
        return taken
    }

    /// Publishes held back while the connection is blocked still count against the buffer limit.
    mutating func setHeldPublishBytes(_ bytes: Int, bufferLimit: Int) -> [PublishWaiter] {
        heldPublishBytes = bytes
        return takePublishWaitersIfRoom(bufferLimit: bufferLimit)
    }

    private mutating func takePublishWaitersIfRoom(bufferLimit: Int) -> [PublishWaiter] {
        guard queuedPublishBytes + heldPublishBytes <= bufferLimit, !publishWaiters.isEmpty else { return [] }
        defer { publishWaiters.removeAll() }
        return publishWaiters
    }

    /// Asks the I/O thread to run its loop once more, without a command: wakes it if it sleeps,
    /// else keeps it from going to sleep before it has looked.
    mutating func requestLookAgain() -> WakeAction {
        let action = takeWakeUp()
        if action == .none { lookAgain = true }
        return action
    }

    /// Marks the I/O thread as about to sleep, unless work is already waiting (then it must not).
    mutating func prepareToSleep(settlementsMayWait: Bool) -> Bool {
        if lookAgain {
            lookAgain = false
            return false
        }
        guard commands.isEmpty && jobs.isEmpty else { return false }
        ioSleeping = true
        self.settlementsMayWait = settlementsMayWait
        return true
    }

    enum WokeAction: Equatable {
        /// A direct publish is being written: wait a moment (microseconds) and ask again.
        case waitForDirectPublish
        /// Awake; `flushRemainder`: a direct publish left bytes to write before anything else.
        case awake(flushRemainder: Bool)
    }

    /// The I/O thread woke up.
    mutating func ioThreadWoke() -> WokeAction {
        if directClaimed { return .waitForDirectPublish }
        ioSleeping = false
        defer { directRemainder = false }
        return .awake(flushRemainder: directRemainder)
    }

    /// A connection is open on `transport`; direct publishes may use it while the thread sleeps.
    mutating func connectionOpened(transport: Transport, frameMax: Int) {
        self.transport = transport
        self.frameMax = frameMax
    }

    /// The socket is about to close (the I/O thread is awake, so no direct publish is in progress).
    mutating func connectionClosing() {
        transport = nil
        directRemainder = false
    }

    mutating func setBlocked(_ reason: String?) {
        blockedReason = reason
    }

    enum JobRoute: Equatable {
        case queued
        case queuedWakeIOThread
        /// The I/O thread has ended: run it on the global executor.
        case runElsewhere
    }

    /// A task that prefers the I/O thread has a job for it.
    mutating func enqueue(_ job: UnownedJob) -> JobRoute {
        if executorStopped { return .runElsewhere }
        jobs.append(job)
        // A recovering I/O thread waits on the pipe between attempts, and runs jobs then.
        return takeWakeUp(orRecovering: true) == .wakeIOThread ? .queuedWakeIOThread : .queued
    }

    /// The I/O thread ends: jobs go to the global executor from now on. Returns those still waiting.
    mutating func stopExecutor() -> Deque<UnownedJob> {
        executorStopped = true
        defer { jobs.removeAll() }
        return jobs
    }

    /// Refuses new commands from now on with `error` (unless already refusing).
    mutating func refuse(_ error: AMQPError) {
        if refusal == nil { refusal = error }
    }

    /// What is left to release when the connection has ended.
    struct Leftovers {
        var commands: Deque<Command>
        var publishWaiters: [PublishWaiter]
        var closeWaiters: [CloseWaiter]
        var subscribers: [AsyncStream<AMQPConnection.Event>.Continuation]
    }

    /// Records the end of the connection and hands back everything still waiting on it.
    mutating func finish(error: AMQPError, byApplication: Bool) -> Leftovers {
        refuse(error)
        final = (error, byApplication)
        defer {
            commands.removeAll()
            publishWaiters.removeAll()
            closeWaiters.removeAll()
            eventSubscribers.removeAll()
            queuedPublishBytes = 0
        }
        return Leftovers(
            commands: commands, publishWaiters: publishWaiters, closeWaiters: closeWaiters,
            subscribers: Array(eventSubscribers.values))
    }
}
