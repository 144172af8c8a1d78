/// How one channel opening lives and ends, as a value: each event (the application or a timeout
/// closes it, the broker closes it, `close-ok` arrives, the close deadline passes, the
/// connection ends or is lost) moves it on and returns what the I/O thread must do, in order.
/// The one place that decides how a channel closes; ``IOLoop`` carries the actions out.
///
/// ```
/// open ──close(because:)──▶ closing ──close-ok──▶ (released)
///   │                          │ └──deadline passed──▶ closing, unanswered ──close-ok──▶ (released)
///   └──broker's close──▶ (released)
/// ```
struct ChannelStateMachine: Equatable {
    enum State: Equatable {
        case open
        /// `channel.close` went out; `deadline` is when the broker must have answered, `nil` once
        /// it has passed (the number stays reserved: the broker may still answer late).
        case closing(deadline: ContinuousClock.Instant?)
        /// Gone: its number is free for another opening.
        case released
    }

    /// What the I/O thread does for the channel. The order of a returned list matters.
    enum Action: Equatable {
        /// Send `channel.close` (200, "Goodbye").
        case sendClose
        /// Answer the broker's `channel.close`.
        case sendCloseOk
        /// The application's handle refuses calls from now on with this error.
        case markClosed(AMQPError)
        /// Commands already queued for this opening fail with the broker's or the timeout's
        /// reason, not a generic one.
        case rememberReason(AMQPError)
        /// End the consumers (normally when `nil`), fail unconfirmed publishes, and resolve the
        /// pending requests: with `pending` as the error, or, when `nil`, as the `close-ok`
        /// they wait for.
        case finish(consumers: AMQPError?, pending: AMQPError?)
        /// Fail the pending requests alone; the channel keeps its number.
        case failPending(AMQPError)
        /// Forget the channel: its number is free.
        case release
        /// The broker broke the protocol; the connection cannot go on.
        case protocolViolation(ProtocolViolation)
    }

    let id: UInt16
    private(set) var state = State.open

    init(id: UInt16) {
        self.id = id
    }

    var isOpen: Bool { state == .open }

    var isClosing: Bool {
        if case .closing = state { return true }
        return false
    }

    /// When the broker must have answered our `channel.close`, while it may still do so in time.
    var closeDeadline: ContinuousClock.Instant? {
        if case .closing(let deadline) = state { return deadline }
        return nil
    }

    // MARK: Events

    /// The client closes the channel: the application asked (`reason` is `nil`), or a call timed
    /// out (everything waiting fails with `reason` at once). `deadline`: when the broker must
    /// have confirmed.
    mutating func close(because reason: AMQPError?, deadline: ContinuousClock.Instant) -> [Action] {
        guard state == .open else { return [] }  // closing already, or gone
        state = .closing(deadline: deadline)
        guard let reason else { return [.markClosed(.channelClosedByApplication(id)), .sendClose] }
        return [.markClosed(reason), .rememberReason(reason), .finish(consumers: reason, pending: reason), .sendClose]
    }

    /// The broker closed the channel (`channel.close`). `answered`: its `close-ok` went out
    /// already (recovery's own calls answer it themselves).
    mutating func brokerClosed(_ error: AMQPError, answered: Bool = false) -> [Action] {
        let answer: [Action] = answered ? [] : [.sendCloseOk]
        switch state {
        case .open:
            state = .released
            return answer + [.release, .markClosed(error), .rememberReason(error), .finish(consumers: error, pending: error)]
        case .closing:
            // Both sides closed at once: each answers the other's close; ours is answered by the
            // broker's close-ok, which still comes.
            return answer
        case .released:
            return []
        }
    }

    /// The broker confirmed our `channel.close`.
    mutating func closeOk() -> [Action] {
        switch state {
        case .closing:
            state = .released
            return [.release, .finish(consumers: nil, pending: nil)]
        case .open:
            return [.protocolViolation(.unexpectedFrame("channel.close-ok on channel \(id), which the client did not close"))]
        case .released:
            return []
        }
    }

    /// A method arrived while the client closes the channel: only the close handshake counts
    /// now. A reply that overtook our `channel.close`, a delivery (the broker requeues it) or a
    /// confirm are dropped (returns `[]`). Returns `nil` while the channel is open: it handles
    /// the method as usual.
    mutating func receivedWhileClosing(_ method: ServerMethod) -> [Action]? {
        guard isClosing else { return nil }
        switch method {
        case .ok(.channelCloseOk):
            return closeOk()
        case .channelClose(let replyCode, let replyText, let classID, let methodID):
            return brokerClosed(
                .channelClosedByBroker(channel: id, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID))
        default:
            return []
        }
    }

    /// Time passed. A close the broker did not confirm by its deadline fails what waits on it;
    /// the number stays reserved, since the broker may still answer.
    mutating func deadlinePassed(at now: ContinuousClock.Instant) -> [Action] {
        guard case .closing(let deadline?) = state, now >= deadline else { return [] }
        state = .closing(deadline: nil)
        return [.failPending(AMQPError(code: .channelClosed, message: "the broker did not confirm channel.close in time"))]
    }

    /// Closed without the broker, between recovery attempts: the lost connection took the
    /// channel with it.
    mutating func closedWithoutBroker() -> [Action] {
        guard state != .released else { return [] }
        state = .released
        return [.release, .markClosed(.channelClosedByApplication(id)), .finish(consumers: nil, pending: nil)]
    }

    /// The connection was lost and will be recovered. A channel the application was closing is
    /// closed with it (returns its actions); an open one is kept for the new connection
    /// (returns nothing: the caller readies it).
    mutating func connectionLost() -> [Action] {
        guard isClosing else { return [] }
        state = .released
        return [.release, .finish(consumers: nil, pending: nil)]
    }

    /// The connection ended for good: closed by the application (`byApplication`), or failed
    /// with `error`.
    mutating func connectionEnded(_ error: AMQPError, byApplication: Bool) -> [Action] {
        guard state != .released else { return [] }
        state = .released
        return [.markClosed(error), .finish(consumers: byApplication ? nil : error, pending: error), .release]
    }
}
