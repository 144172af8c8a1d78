#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DequeModule
import Logging
import Synchronization

/// The part of a connection that any task may touch: the mailbox of commands for the
/// I/O thread, the wake-up pipe, and the connection's lifecycle state.
///
/// Everything that touches librabbitmq lives in ``IOLoop``, on its own thread.
final class ConnectionCore: Sendable {
    private struct Shared {
        var commands: Deque<Command> = []
        /// Bytes of publishes waiting in `commands`; publishers wait while it is over the limit.
        var queuedPublishBytes = 0
        /// Bytes of publishes the I/O thread holds back while the broker blocks the connection.
        var heldPublishBytes = 0
        var publishWaiters: [CheckedContinuation<Void, any Error>] = []
        /// The I/O thread is (about to be) in `poll` and needs a byte on the pipe to wake.
        var ioSleeping = false
        /// The I/O thread sleeps for at most a millisecond: an ack, nack or reject can wait for it
        /// to wake by itself, so a run of them costs one wake-up and one write.
        var settlementsMayWait = false
        /// Once set, new commands are refused with this error.
        var refusal: AMQPError?
        /// Set when the I/O thread has finished; `byApplication` tells a requested close from a failure.
        var final: (error: AMQPError, byApplication: Bool)?
        var closeWaiters: [CheckedContinuation<AMQPError?, Never>] = []
        var blockedReason: String?
        /// The I/O thread is reconnecting; commands wait in `commands` until it is done.
        var recovering = false
        var eventSubscribers: [UInt64: AsyncStream<AMQPConnection.Event>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0

        // Direct publishes (see ``DirectPublisher``)
        /// The open connection's socket and frame_max, or -1 while there is none.
        var socket: Int32 = -1
        var frameMax = 0
        /// A task is writing a direct publish; the I/O thread waits for it before it goes on.
        var directClaimed = false
        /// A direct publish left bytes the I/O thread must write before anything else.
        var directRemainder = false
        var lastPublishAt = ContinuousClock.now

        // The connection as a task executor (see ``AMQPConnection/taskExecutor``)
        /// Jobs of tasks that prefer the I/O thread, for it to run between reads.
        var jobs: Deque<UnownedJob> = []
        /// The I/O thread has ended: jobs go to the global executor instead.
        var executorStopped = false

        /// Whoever queued work for the I/O thread calls this once: `true` means it must write to
        /// the wake-up pipe (the thread sleeps, or waits between recovery attempts when
        /// `orRecovering`). Only the first caller after the thread went to sleep gets `true`.
        mutating func takeWakeUp(orRecovering: Bool = false) -> Bool {
            defer { ioSleeping = false }
            return ioSleeping || (orRecovering && recovering)
        }

        mutating func takePublishWaitersIfRoom(limit: Int) -> [CheckedContinuation<Void, any Error>] {
            guard queuedPublishBytes + heldPublishBytes <= limit else { return [] }
            defer { publishWaiters.removeAll() }
            return publishWaiters
        }
    }

    let configuration: AMQPConnection.Configuration
    let logger: Logger
    private let shared = Mutex(Shared())
    private let wakeReadFD: Int32
    private let wakeWriteFD: Int32
    private let consumerTagCounter = Atomic<UInt64>(0)
    /// Whether `jobs` may hold something: the I/O thread checks it every turn without the lock.
    private let jobsPending = Atomic<Bool>(false)
    let directPublisher = DirectPublisher()
    /// A publish that follows the previous one by more than this is sporadic: it goes straight
    /// to the socket when it can. Closer ones are batched by the I/O thread, fewer writes in all.
    static let sporadicPublishGap = Duration.microseconds(50)
    /// Larger bodies always go through the I/O thread: they are about throughput, and one that
    /// does not fit the socket buffer at once would leave most of itself for the I/O thread anyway.
    static let directPublishMaxBody = 16 * 1024

    init(configuration: AMQPConnection.Configuration, logger: Logger) throws(AMQPError) {
        self.configuration = configuration
        self.logger = logger
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw AMQPError(code: .library, message: "could not create the I/O thread's wake-up pipe (errno \(errno))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        wakeReadFD = fds[0]
        wakeWriteFD = fds[1]
    }

    deinit {
        close(wakeReadFD)
        close(wakeWriteFD)
    }

    var wakeFileDescriptor: Int32 { wakeReadFD }

    // MARK: Any task

    func submit(_ command: Command) throws(AMQPError) {
        let wake = try shared.withLock { shared throws(AMQPError) -> Bool in
            if let refusal = shared.refusal { throw refusal }
            shared.commands.append(command)
            if case .settle = command, shared.settlementsMayWait { return false }
            return shared.takeWakeUp()
        }
        if wake { signal() }
    }

    /// Submits a command that carries a continuation; a refused command fails it instead of throwing.
    func submitOrFail(_ command: Command) {
        do {
            try submit(command)
        } catch {
            command.fail(error)
        }
    }

    private enum PublishRoute {
        case direct(socket: Int32, frameMax: Int)
        case queued(wake: Bool, mustWait: Bool)
    }

    /// Publishes a message: straight to the socket when it is sporadic and the I/O thread is
    /// idle (see ``DirectPublisher``), else through the I/O thread. Suspends while more than
    /// `publishBufferLimit` bytes are waiting for the I/O thread, so a fast publisher cannot grow
    /// memory without bound.
    func publish(_ channel: ChannelRef, _ request: PublishRequest) async throws(AMQPError) {
        let cost = Self.publishCost(request)
        let limit = configuration.publishBufferLimit
        let now = ContinuousClock.now
        let route = try shared.withLock { shared throws(AMQPError) -> PublishRoute in
            if let refusal = shared.refusal { throw refusal }
            let sporadic = now - shared.lastPublishAt > Self.sporadicPublishGap
            shared.lastPublishAt = now
            // The I/O thread sleeps with nothing queued: nothing can come before this publish.
            if sporadic && request.confirm == nil && request.body.count <= Self.directPublishMaxBody
                && shared.ioSleeping && shared.commands.isEmpty
                && !shared.directClaimed && !shared.directRemainder && !shared.recovering
                && shared.blockedReason == nil && shared.socket >= 0
            {
                shared.directClaimed = true
                return .direct(socket: shared.socket, frameMax: shared.frameMax)
            }
            shared.commands.append(.publish(channel, request))
            shared.queuedPublishBytes += cost
            return .queued(
                wake: shared.takeWakeUp(), mustWait: shared.queuedPublishBytes + shared.heldPublishBytes > limit)
        }
        switch route {
        case .direct(let socket, let frameMax):
            let outcome = directPublisher.publish(request, channel: channel.id, socket: socket, frameMax: frameMax)
            let wake = shared.withLock { shared -> Bool in
                shared.directClaimed = false
                guard case .remainder = outcome else { return false }
                shared.directRemainder = true
                return shared.takeWakeUp()
            }
            if wake { signal() }
            if case .failed(let status) = outcome { throw .unencodable(status) }
        case .queued(let wake, let mustWait):
            if wake { signal() }
            if mustWait {
                try await waitForPublishCapacity()
            }
        }
    }

    private func waitForPublishCapacity() async throws(AMQPError) {
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let ready = shared.withLock { shared -> Result<Bool, AMQPError> in
                    if let refusal = shared.refusal { return .failure(refusal) }
                    if shared.queuedPublishBytes + shared.heldPublishBytes <= configuration.publishBufferLimit {
                        return .success(true)
                    }
                    shared.publishWaiters.append(continuation)
                    return .success(false)
                }
                switch ready {
                case .success(true): continuation.resume()
                case .success(false): break
                case .failure(let error): continuation.resume(throwing: error)
                }
            }
        } catch {
            throw AMQPError.wrap(error)
        }
    }

    /// Asks the I/O thread to close the connection gracefully. Idempotent.
    func beginClose() {
        let wake = shared.withLock { shared -> Bool in
            guard shared.refusal == nil else { return false }
            shared.commands.append(.closeConnection)
            shared.refusal = .connectionClosedByApplication
            return shared.takeWakeUp(orRecovering: true)
        }
        if wake { signal() }
    }

    /// Waits until the I/O thread has finished. Returns the error that ended the connection,
    /// or `nil` when the application closed it.
    func waitUntilClosed() async -> AMQPError? {
        await withCheckedContinuation { (continuation: CheckedContinuation<AMQPError?, Never>) in
            let ended = shared.withLock { shared -> Result<AMQPError?, Never>? in
                guard let final = shared.final else {
                    shared.closeWaiters.append(continuation)
                    return nil
                }
                return .success(final.byApplication ? nil : final.error)
            }
            if let ended { continuation.resume(with: ended) }
        }
    }

    var isOpen: Bool { shared.withLock { $0.refusal == nil } }

    var isRecovering: Bool { shared.withLock { $0.recovering } }

    /// Why the broker blocked publishing on this connection (a memory or disk alarm), or `nil`.
    var blockedReason: String? { shared.withLock { $0.blockedReason } }

    func makeConsumerTag(channel: UInt16) -> String {
        let number = consumerTagCounter.wrappingAdd(1, ordering: .relaxed).newValue
        return "amqp-swift.\(channel).\(number)"
    }

    private func signal() {
        var byte: UInt8 = 1
        _ = write(wakeWriteFD, &byte, 1)
    }

    // MARK: I/O thread

    /// Moves the queued commands to the end of `batch` and releases waiting publishers.
    func takeCommands(into batch: inout Deque<Command>) {
        let waiters = shared.withLock { shared -> [CheckedContinuation<Void, any Error>] in
            if batch.isEmpty {
                swap(&batch, &shared.commands)
            } else {
                // Left over from a batch a connection loss interrupted: those go first.
                batch.append(contentsOf: shared.commands)
                shared.commands.removeAll()
            }
            shared.queuedPublishBytes = 0
            return shared.takePublishWaitersIfRoom(limit: configuration.publishBufferLimit)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Publishes held back while the connection is blocked still count against the buffer limit.
    func setHeldPublishBytes(_ bytes: Int) {
        let waiters = shared.withLock { shared -> [CheckedContinuation<Void, any Error>] in
            shared.heldPublishBytes = bytes
            return shared.takePublishWaitersIfRoom(limit: configuration.publishBufferLimit)
        }
        for waiter in waiters { waiter.resume() }
    }

    static func publishCost(_ request: PublishRequest) -> Int {
        request.body.count + 256
    }

    /// Marks the I/O thread as about to sleep, unless commands are already waiting.
    /// `settlementsMayWait`: it sleeps briefly, and settlements need not wake it.
    func prepareToSleep(settlementsMayWait: Bool) -> Bool {
        shared.withLock { shared in
            guard shared.commands.isEmpty && shared.jobs.isEmpty else { return false }
            shared.ioSleeping = true
            shared.settlementsMayWait = settlementsMayWait
            return true
        }
    }

    /// The I/O thread woke: waits for a direct publish in progress to finish, and returns
    /// whether one left bytes that the I/O thread must write before anything else.
    @discardableResult
    func didWake(drainWakePipe: Bool) -> Bool {
        var remainder = false
        // A direct publish takes microseconds (encode, one non-blocking send): wait it out.
        while shared.withLock({ shared -> Bool in
            if shared.directClaimed { return true }
            shared.ioSleeping = false
            remainder = shared.directRemainder
            shared.directRemainder = false
            return false
        }) {
            sched_yield()
        }
        if drainWakePipe {
            var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            while withUnsafeMutableBytes(of: &buffer, { read(wakeReadFD, $0.baseAddress, $0.count) }) > 0 {}
        }
        return remainder
    }

    /// I/O thread: a connection is open on `socket`; direct publishes may use it while the thread sleeps.
    func connectionOpened(socket: Int32, frameMax: Int) {
        shared.withLock { shared in
            shared.socket = socket
            shared.frameMax = frameMax
        }
    }

    /// I/O thread (awake, so no direct publish is in progress): the socket is about to close.
    func connectionClosing() {
        shared.withLock { shared in
            shared.socket = -1
            shared.directRemainder = false
        }
        directPublisher.discard()
    }

    func setBlocked(_ reason: String?) {
        let subscribers = shared.withLock { shared in
            shared.blockedReason = reason
            return Array(shared.eventSubscribers.values)
        }
        for subscriber in subscribers { subscriber.yield(reason.map { .blocked(reason: $0) } ?? .unblocked) }
    }

    func setRecovering(_ recovering: Bool) {
        shared.withLock { $0.recovering = recovering }
    }

    /// Waits on the wake-up pipe for at most `timeout`; returns early when something was written
    /// to it. (No direct publish happens meanwhile: the connection is recovering.)
    func waitForWakeUp(timeout: Duration) {
        var fd = pollfd(fd: wakeReadFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&fd, 1, Int32(clamping: max(0, timeout.milliseconds)))
        didWake(drainWakePipe: fd.revents != 0)
    }

    /// I/O thread: moves the jobs enqueued so far to `batch` (which is empty).
    func takeJobs(into batch: inout Deque<UnownedJob>) {
        // A job enqueued just after this check keeps the thread from sleeping (prepareToSleep)
        // and is taken on the next turn.
        guard jobsPending.load(ordering: .acquiring) else { return }
        shared.withLock { shared in
            swap(&batch, &shared.jobs)
            jobsPending.store(false, ordering: .relaxed)
        }
    }

    /// I/O thread, as it ends: from now on jobs go to the global executor. Returns those that
    /// were still waiting, for the caller to hand on there too.
    func stopExecutor() -> Deque<UnownedJob> {
        shared.withLock { shared in
            shared.executorStopped = true
            defer { shared.jobs.removeAll() }
            return shared.jobs
        }
    }

    func emit(_ event: AMQPConnection.Event) {
        let subscribers = shared.withLock { Array($0.eventSubscribers.values) }
        for subscriber in subscribers { subscriber.yield(event) }
    }

    /// A new stream of the connection's events; it ends after `.closed`.
    func events() -> AsyncStream<AMQPConnection.Event> {
        let (stream, continuation) = AsyncStream.makeStream(of: AMQPConnection.Event.self)
        let final = shared.withLock { shared -> (error: AMQPError, byApplication: Bool)? in
            if let final = shared.final { return final }
            let id = shared.nextSubscriber
            shared.nextSubscriber += 1
            shared.eventSubscribers[id] = continuation
            continuation.onTermination = { [weak self] _ in
                _ = self?.shared.withLock { $0.eventSubscribers.removeValue(forKey: id) }
            }
            if let reason = shared.blockedReason { continuation.yield(.blocked(reason: reason)) }
            return nil
        }
        if let final {
            continuation.yield(.closed(final.byApplication ? nil : final.error))
            continuation.finish()
        }
        return stream
    }

    /// Refuses new commands from now on with `error` (unless already refusing).
    func refuse(_ error: AMQPError) {
        shared.withLock { shared in
            if shared.refusal == nil { shared.refusal = error }
        }
    }

    /// Records the end of the connection. Returns the commands that were never processed,
    /// which the caller fails.
    func finish(error: AMQPError, byApplication: Bool) -> Deque<Command> {
        let (commands, publishWaiters, closeWaiters, subscribers) = shared.withLock { shared in
            if shared.refusal == nil { shared.refusal = error }
            shared.final = (error, byApplication)
            defer {
                shared.commands.removeAll()
                shared.publishWaiters.removeAll()
                shared.closeWaiters.removeAll()
                shared.eventSubscribers.removeAll()
                shared.queuedPublishBytes = 0
            }
            return (shared.commands, shared.publishWaiters, shared.closeWaiters, Array(shared.eventSubscribers.values))
        }
        for waiter in publishWaiters { waiter.resume(throwing: error) }
        for waiter in closeWaiters { waiter.resume(returning: byApplication ? nil : error) }
        for subscriber in subscribers {
            subscriber.yield(.closed(byApplication ? nil : error))
            subscriber.finish()
        }
        return commands
    }
}

/// The I/O thread runs the jobs of tasks that prefer it between reading frames and sleeping,
/// so a consumer whose task prefers it gets each delivery without waking another thread.
extension ConnectionCore: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        enum Route { case queued, wake, global }
        let route = shared.withLock { shared -> Route in
            if shared.executorStopped { return .global }
            shared.jobs.append(job)
            jobsPending.store(true, ordering: .releasing)
            // A recovering I/O thread waits on the pipe between attempts, and runs jobs then.
            return shared.takeWakeUp(orRecovering: true) ? .wake : .queued
        }
        switch route {
        case .queued: break
        case .wake: signal()
        case .global: globalConcurrentExecutor.enqueue(ExecutorJob(job))
        }
    }
}

extension AMQPError {
    /// Continuations only throw `AMQPError`s; this turns the `any Error` they are typed with back.
    static func wrap(_ error: any Error) -> AMQPError {
        (error as? AMQPError) ?? AMQPError(code: .library, message: "\(error)")
    }
}
