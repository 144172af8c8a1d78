/// How one connection lives, closes, is lost and recovers, as a value: each event (the socket
/// failed, the broker or the application closed it, a recovery reply arrived, time passed)
/// moves it on and returns what the I/O thread must do, in order. It never reads a clock: every
/// event that depends on time carries `now`, so tests drive it on a clock of their own.
///
/// ```
/// connecting ──connected──▶ open ──close requested──▶ closing ──close-ok / deadline──▶ closed
///                            │  ▲                                   (lost while closing ──▶ closed)
///                lost, recovery │ restored
///                 enabled    ▼  │
///        recovering: waiting ──delay over──▶ connecting ──connected──▶ restoring step 1…N ──┘
///                      ▲                          │                         │
///                      └─────── attempt failed ───┴─────────────────────────┘
///                      (after `maximumAttempts`, or when the application closes: closed)
/// ```
///
/// Channels have their own machine (``ChannelStateMachine``); this one decides what the
/// connection as a whole does, and which recovery step comes next. ``IOLoop`` carries the
/// actions out.
struct ConnectionStateMachine {
    enum State: Equatable {
        /// The first connect and login, under way.
        case connecting
        case open
        /// `connection.close` went out; the broker must confirm by `deadline`.
        case closing(deadline: ContinuousClock.Instant)
        /// Lost; see ``Recovery``.
        case recovering(Recovery)
        /// Over, for good.
        case closed
    }

    /// One recovery: why the connection was lost, which attempt is under way, and where it is.
    struct Recovery: Equatable {
        enum Phase: Equatable {
            /// Backing off before attempt ``Recovery/attempt``.
            case waiting(until: ContinuousClock.Instant)
            /// Connecting and logging in; the attempt must be over by `deadline`.
            case connecting(deadline: ContinuousClock.Instant)
            /// Restoring: `awaiting` went out and waits for its reply (or, for a republish,
            /// for its writing); `remaining` follow.
            case restoring(deadline: ContinuousClock.Instant, awaiting: RecoveryStep, remaining: [RecoveryStep])
        }

        var cause: AMQPError
        /// The attempt under way or next, counting from 1.
        var attempt: Int
        var phase: Phase
        /// Why the last attempt failed.
        var lastError: AMQPError
        /// The plan of the attempt under way, for reopening a channel after a refused consumer.
        var plan: RecoveryPlan?

        var step: RecoveryStep? {
            if case .restoring(_, let awaiting, _) = phase { return awaiting }
            return nil
        }
    }

    /// What the I/O thread does. The order of a returned list matters.
    enum Action: Equatable {
        /// Send `connection.close` (200, "Goodbye"); publishes held while blocked fail.
        case sendConnectionClose
        /// Answer the broker's `connection.close`.
        case sendConnectionCloseOk
        /// Log that the broker did not confirm our close in time.
        case closeTimedOut
        /// Fail or end everything that waits on the connection, free librabbitmq, stop the thread.
        case tearDown(AMQPError, byApplication: Bool)
        /// Drop the socket and everything in flight on it, and tell the application the
        /// connection is recovering.
        case beginRecovery(AMQPError)
        /// Connect and log in for this attempt, by `deadline`; report ``connected(at:plan:)`` or
        /// ``attemptFailed(_:at:)``.
        case connect(attempt: Int, deadline: ContinuousClock.Instant)
        /// Send the step's method (resolved from the live channels and topology, as renamed so far).
        case send(RecoveryStep)
        /// Answer the broker's `channel.close` on a channel recovery was talking on.
        case sendChannelCloseOk(UInt16)
        /// The broker would not reopen an application channel: it closes for good with `error`.
        case abandonChannel(UInt16, AMQPError)
        /// The broker refused a recorded exchange, queue or binding: log it and go on.
        case declarationRefused(RecoveryPlan.Declaration, AMQPError)
        /// A consumer could not be restored (say, its queue is gone): it ends with `error`.
        case abandonConsumer(channel: UInt16, consumerTag: String, AMQPError)
        /// A server-named queue got a new name: the topology and its consumers follow.
        case renameQueue(from: String, to: String)
        /// The attempt failed: drop its socket, report it, and ready the channels for the next one.
        case attemptFailed(attempt: Int, AMQPError)
        /// The connection is back.
        case recovered(attempt: Int)
    }

    struct Configuration {
        var recovery: AMQPConnection.Configuration.Recovery
        var closeTimeout: Duration
        /// A random number in `0.5...1`: the backoff's jitter factor.
        var jitter: () -> Double = { Double.random(in: 0.5...1.0) }
    }

    private(set) var state = State.connecting {
        didSet { phase = Phase(state) }
    }
    /// Which case ``state`` is, without its payload: what the I/O thread checks on every turn of
    /// its loop, read as a plain stored field rather than by copying the state.
    private(set) var phase = Phase.connecting
    let configuration: Configuration

    enum Phase: Equatable {
        case connecting, open, closing, recovering, closed

        init(_ state: State) {
            switch state {
            case .connecting: self = .connecting
            case .open: self = .open
            case .closing: self = .closing
            case .recovering: self = .recovering
            case .closed: self = .closed
            }
        }
    }
    /// When the connection last opened or recovered, and after how many attempts: a connection
    /// lost soon after goes on counting attempts (``AMQPConnection/Configuration/Recovery/backoffResetAfter``).
    private(set) var lastConnected: (at: ContinuousClock.Instant, attempts: Int)?

    init(configuration: Configuration) {
        self.configuration = configuration
    }

    // MARK: Reading the state

    var isOpen: Bool { phase == .open }
    var isClosed: Bool { phase == .closed }
    var isClosing: Bool { phase == .closing }

    var recovery: Recovery? {
        if case .recovering(let recovery) = state { return recovery }
        return nil
    }

    var isRecovering: Bool { phase == .recovering }

    /// The channel number recovery declares the topology on, while it does.
    var topologyChannel: UInt16? {
        guard let step = recovery?.step, !step.isOnApplicationChannel else { return nil }
        return step.channel
    }

    /// The next moment ``tick(at:)`` has something to do.
    var nextDeadline: ContinuousClock.Instant? {
        switch state {
        case .closing(let deadline): deadline
        case .recovering(let recovery):
            switch recovery.phase {
            case .waiting(let until): until
            case .connecting(let deadline), .restoring(let deadline, _, _): deadline
            }
        case .connecting, .open, .closed: nil
        }
    }

    // MARK: Events: the connection's life

    /// The first connect and login succeeded.
    mutating func connected(at now: ContinuousClock.Instant) {
        guard state == .connecting else { return }
        state = .open
        lastConnected = (now, 0)
    }

    /// The application asked to close. `brokerUnresponsive`: a close already went unanswered,
    /// so this one does not wait for the broker either.
    mutating func closeRequested(at now: ContinuousClock.Instant, brokerUnresponsive: Bool = false) -> [Action] {
        switch state {
        case .open:
            state = .closing(deadline: now + (brokerUnresponsive ? .zero : configuration.closeTimeout))
            return [.sendConnectionClose]
        case .recovering(let recovery):
            if case .restoring = recovery.phase {
                // The new connection is open: close it as the application asked, politely.
                state = .closing(deadline: now + configuration.closeTimeout)
                return [.sendConnectionClose]
            }
            state = .closed
            return [.tearDown(.connectionClosedByApplication, byApplication: true)]
        case .connecting, .closing, .closed:
            return []
        }
    }

    /// The socket failed, a frame broke the protocol, or writing stalled: the connection is lost.
    mutating func lost(_ error: AMQPError, at now: ContinuousClock.Instant) -> [Action] {
        switch state {
        case .connecting, .closed:
            return []
        case .closing:
            state = .closed
            return [.tearDown(.connectionClosedByApplication, byApplication: true)]
        case .open:
            guard configuration.recovery.isEnabled else {
                state = .closed
                return [.tearDown(error, byApplication: false)]
            }
            // A connection lost soon after it (re)connected counts as one more failed attempt:
            // the backoff goes on growing instead of starting again.
            var attemptsSoFar = 0
            if let lastConnected, now - lastConnected.at < configuration.recovery.backoffResetAfter {
                attemptsSoFar = lastConnected.attempts
            }
            let recovery = Recovery(
                cause: error, attempt: attemptsSoFar, phase: .waiting(until: now), lastError: error, plan: nil)
            return [.beginRecovery(error)] + scheduleAttempt(after: recovery, at: now)
        case .recovering(let recovery):
            switch recovery.phase {
            case .waiting: return []  // no connection to lose
            case .connecting, .restoring: return attemptFailed(error, at: now)
            }
        }
    }

    /// The broker sent `connection.close`.
    mutating func brokerClosed(replyCode: UInt16, replyText: String, at now: ContinuousClock.Instant) -> [Action] {
        let error = AMQPError(
            code: replyCode == 403 ? .accessRefused : .connectionClosed,
            message: isRecovering ? "the broker closed the connection during recovery" : "the broker closed the connection",
            replyCode: replyCode, replyText: replyText)
        switch state {
        case .closing:
            state = .closed
            return [.sendConnectionCloseOk, .tearDown(error, byApplication: true)]
        case .open, .recovering:
            return [.sendConnectionCloseOk] + lost(error, at: now)
        case .connecting, .closed:
            return []
        }
    }

    /// The broker confirmed a `connection.close`.
    mutating func closeOk(at now: ContinuousClock.Instant) -> [Action] {
        guard case .closing = state else {
            return lost(
                .protocolViolation(.unexpectedFrame("method 10.51 on channel 0 answers no request of the client's")),
                at: now)
        }
        state = .closed
        return [.tearDown(.connectionClosedByApplication, byApplication: true)]
    }

    /// Time passed: a close that waited too long, a backoff that is over, an attempt past its deadline.
    mutating func tick(at now: ContinuousClock.Instant) -> [Action] {
        guard let deadline = nextDeadline, now >= deadline else { return [] }
        switch state {
        case .closing:
            state = .closed
            return [.closeTimedOut, .tearDown(.connectionClosedByApplication, byApplication: true)]
        case .recovering(var recovery):
            switch recovery.phase {
            case .waiting:
                let deadline = now + configuration.recovery.attemptTimeout
                recovery.phase = .connecting(deadline: deadline)
                state = .recovering(recovery)
                return [.connect(attempt: recovery.attempt, deadline: deadline)]
            case .connecting, .restoring:
                let error = AMQPError(
                    code: .connectTimeout,
                    message: "the recovery attempt did not finish within \(configuration.recovery.attemptTimeout)")
                return attemptFailed(error, at: now)
            }
        case .connecting, .open, .closed:
            return []
        }
    }

    // MARK: Events: recovery

    /// The attempt's connect and login succeeded: restore what `plan` lists.
    mutating func connected(at now: ContinuousClock.Instant, plan: RecoveryPlan) -> [Action] {
        guard case .recovering(var recovery) = state, case .connecting(let deadline) = recovery.phase else { return [] }
        recovery.plan = plan
        return advance(recovery, deadline: deadline, remaining: plan.steps, at: now)
    }

    /// Connecting or restoring failed: the next attempt follows its backoff, unless that was the last.
    mutating func attemptFailed(_ error: AMQPError, at now: ContinuousClock.Instant) -> [Action] {
        guard case .recovering(var recovery) = state else { return [] }
        switch recovery.phase {
        case .waiting: return []
        case .connecting, .restoring: break
        }
        recovery.lastError = error
        recovery.plan = nil
        recovery.phase = .waiting(until: now)
        state = .recovering(recovery)
        return [.attemptFailed(attempt: recovery.attempt, error)] + scheduleAttempt(after: recovery, at: now)
    }

    /// A method arrived during a recovery attempt. Returns the actions when it is the reply (or
    /// the refusal) the awaited step waits for; `nil` when the frame is not recovery's, and is
    /// handled as usual (a delivery to a consumer restored already, say).
    mutating func recoveryReply(_ method: ServerMethod, on channel: UInt16, at now: ContinuousClock.Instant) -> [Action]? {
        guard case .recovering(let recovery) = state, case .restoring(let deadline, let step, var remaining) = recovery.phase,
            channel == step.channel
        else { return nil }
        if case .channelClose(let replyCode, let replyText, let classID, let methodID) = method {
            let error = AMQPError.channelClosedByBroker(
                channel: channel, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID)
            var actions: [Action] = [.sendChannelCloseOk(channel)]
            switch step {
            case .openChannel, .setPrefetch, .selectConfirms:
                actions.append(.abandonChannel(channel, error))
                remaining.removeAll { $0.isOnApplicationChannel && $0.channel == channel }
            case .openTopologyChannel:
                return actions + attemptFailed(error, at: now)
            case .declare(let declaration, let topologyChannel):
                actions.append(.declarationRefused(declaration, error))
                remaining.insert(.openTopologyChannel(topologyChannel), at: 0)
            case .closeTopologyChannel:
                break  // closed either way
            case .consume(_, let consumerTag):
                if Self.replicaNotReady(error) && recovery.attempt < Self.replicaRetryAttempts {
                    // The queue's replica on this node is restarting (its leader's node just went
                    // down): the next attempt, a moment later and perhaps on another node,
                    // restores everything again.
                    return actions + attemptFailed(error, at: now)
                }
                // This consumer ends; the channel reopens for the others.
                actions.append(.abandonConsumer(channel: channel, consumerTag: consumerTag, error))
                let reopening = recovery.plan?.channels.first { $0.id == channel }.map(RecoveryStep.reopening)
                remaining.insert(contentsOf: reopening ?? [.openChannel(channel)], at: 0)
            case .republish:
                return nil  // waits for no reply: an ordinary close of the channel
            }
            return actions + advance(recovery, deadline: deadline, remaining: remaining, at: now)
        }
        guard let replyID = method.replyID, replyID == step.reply else { return nil }
        var actions: [Action] = []
        if case .declare(let declaration, _) = step, declaration.kind == .queue, case .queueDeclareOk(let info) = method,
            let oldName = declaration.queueName, info.name != oldName
        {
            actions.append(.renameQueue(from: oldName, to: info.name))
        }
        return actions + advance(recovery, deadline: deadline, remaining: remaining, at: now)
    }

    /// The awaited step needs no reply: a republish was written, or there was nothing to send
    /// (its consumer or recorded declaration is gone).
    mutating func stepDone(_ step: RecoveryStep, at now: ContinuousClock.Instant) -> [Action] {
        guard case .recovering(let recovery) = state, case .restoring(let deadline, step, let remaining) = recovery.phase
        else { return [] }
        return advance(recovery, deadline: deadline, remaining: remaining, at: now)
    }

    /// An application channel closed during the attempt (the broker closed it): its later steps go.
    mutating func channelReleased(_ id: UInt16) {
        guard case .recovering(var recovery) = state, case .restoring(let deadline, let step, var remaining) = recovery.phase
        else { return }
        remaining.removeAll { $0.isOnApplicationChannel && $0.channel == id }
        recovery.phase = .restoring(deadline: deadline, awaiting: step, remaining: remaining)
        state = .recovering(recovery)
    }

    // MARK: Helpers

    private mutating func advance(
        _ recovery: Recovery, deadline: ContinuousClock.Instant, remaining: [RecoveryStep], at now: ContinuousClock.Instant
    ) -> [Action] {
        var recovery = recovery
        guard let next = remaining.first else {
            state = .open
            lastConnected = (now, recovery.attempt)
            return [.recovered(attempt: recovery.attempt)]
        }
        recovery.phase = .restoring(deadline: deadline, awaiting: next, remaining: Array(remaining.dropFirst()))
        state = .recovering(recovery)
        return [.send(next)]
    }

    /// Waits before the next attempt, or gives up after the last.
    private mutating func scheduleAttempt(after recovery: Recovery, at now: ContinuousClock.Instant) -> [Action] {
        var recovery = recovery
        recovery.attempt += 1
        if let maximum = configuration.recovery.maximumAttempts, recovery.attempt > maximum {
            let last = recovery.lastError
            state = .closed
            return [
                .tearDown(
                    AMQPError(
                        code: .connectionLost,
                        message: "gave up recovering the connection after \(maximum) attempts: \(last.message)",
                        replyCode: last.replyCode, replyText: last.replyText, libraryStatus: last.libraryStatus),
                    byApplication: false)
            ]
        }
        let delay = configuration.recovery.delay(beforeAttempt: recovery.attempt, jitter: configuration.jitter())
        recovery.phase = .waiting(until: now + delay)
        state = .recovering(recovery)
        return []
    }

    /// How many recovery attempts a consumer refused by a replica that is not ready may hold up.
    static let replicaRetryAttempts = 3

    /// RabbitMQ refuses to consume from a stream (or quorum queue) whose replica on the node is not
    /// running, as it is for a moment while a new leader takes over after a node went down.
    static func replicaNotReady(_ error: AMQPError) -> Bool {
        error.replyCode == 406 && error.replyText?.contains("does not have a replica on the local node") == true
    }
}
