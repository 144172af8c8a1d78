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
        /// The application asked to close (the I/O thread checks this while it recovers).
        var closeRequested = false
        var eventSubscribers: [UInt64: AsyncStream<AMQPConnection.Event>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0

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
            guard shared.ioSleeping else { return false }
            if case .settle = command, shared.settlementsMayWait { return false }
            shared.ioSleeping = false
            return true
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

    /// Queues a publish. Suspends while more than `publishBufferLimit` bytes are waiting for
    /// the I/O thread, so a fast publisher cannot grow memory without bound.
    func publish(_ channel: ChannelRef, _ request: PublishRequest) async throws(AMQPError) {
        let cost = Self.publishCost(request)
        let limit = configuration.publishBufferLimit
        let (wake, mustWait) = try shared.withLock { shared throws(AMQPError) -> (Bool, Bool) in
            if let refusal = shared.refusal { throw refusal }
            shared.commands.append(.publish(channel, request))
            shared.queuedPublishBytes += cost
            defer { shared.ioSleeping = false }
            return (shared.ioSleeping, shared.queuedPublishBytes + shared.heldPublishBytes > limit)
        }
        if wake { signal() }
        if mustWait {
            try await waitForPublishCapacity()
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
            shared.closeRequested = true
            defer { shared.ioSleeping = false }
            return shared.ioSleeping || shared.recovering
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

    var isCloseRequested: Bool { shared.withLock { $0.closeRequested } }

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
            guard shared.commands.isEmpty else { return false }
            shared.ioSleeping = true
            shared.settlementsMayWait = settlementsMayWait
            return true
        }
    }

    func didWake(drainWakePipe: Bool) {
        shared.withLock { $0.ioSleeping = false }
        guard drainWakePipe else { return }
        var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(of: &buffer, { read(wakeReadFD, $0.baseAddress, $0.count) }) > 0 {}
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

    /// Waits on the wake-up pipe for at most `timeout`; returns early when something was written to it.
    func waitForWakeUp(timeout: Duration) {
        var fd = pollfd(fd: wakeReadFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&fd, 1, Int32(clamping: max(0, timeout.milliseconds)))
        didWake(drainWakePipe: fd.revents != 0)
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

extension AMQPError {
    /// Continuations only throw `AMQPError`s; this turns the `any Error` they are typed with back.
    static func wrap(_ error: any Error) -> AMQPError {
        (error as? AMQPError) ?? AMQPError(code: .library, message: "\(error)")
    }
}
