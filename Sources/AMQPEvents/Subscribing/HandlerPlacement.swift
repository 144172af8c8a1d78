/// Where a subscription at concurrency 1 runs its handler: on the connection's I/O thread
/// (``AMQPConnection/taskExecutor``) while every call is quick, else on the global executor.
///
/// On the I/O thread a delivery reaches the handler, and its ack the socket, without waking
/// another thread: the thread that read the delivery runs the handler. That halves the thread
/// hand-offs per event, but a call that takes long holds up every channel of the connection. So
/// a call longer than `quickLimit` moves the handler off the thread; it comes back only after
/// a run of quick calls, a run that doubles each time it moved off (a handler that is slow now
/// and then ends up staying off).
///
/// A value: ``record(_:)`` takes one call's duration and says whether to move.
struct HandlerPlacement: Equatable {
    /// Calls at most this long count as quick; `nil`: the handler never runs on the I/O thread.
    let quickLimit: Duration?
    /// Whether the handler runs on the connection's I/O thread now.
    private(set) var onConnectionThread: Bool
    /// How many times a slow call moved the handler off the thread.
    private var movesOff = 0
    /// Quick calls in a row since it moved off.
    private var quickCallsOff = 0

    /// The run of quick calls that brings a handler back the first time; it doubles each time.
    static let firstReturnAfter = 1_000
    /// Past this, a handler that moved off stays off.
    static let maximumReturnAfter = 64_000

    enum Decision: Equatable {
        case stay
        /// The call took longer than the limit: run the next ones off the I/O thread.
        case moveOff
        /// A run of quick calls: run the next ones on the I/O thread again.
        case moveOn
    }

    /// A placement that starts on the I/O thread, or never uses it when `quickLimit` is `nil`.
    init(quickLimit: Duration?) {
        self.quickLimit = quickLimit
        self.onConnectionThread = quickLimit != nil
    }

    /// Quick calls needed in a row, off the thread, before it moves back (`.max`: never).
    var quickCallsToReturn: Int {
        guard quickLimit != nil else { return .max }
        guard movesOff > 0 else { return Self.firstReturnAfter }
        let run = Self.firstReturnAfter << (movesOff - 1)
        return run > Self.maximumReturnAfter ? .max : run
    }

    /// Records how long one handler call took.
    mutating func record(_ elapsed: Duration) -> Decision {
        guard let quickLimit else { return .stay }
        let quick = elapsed <= quickLimit
        if onConnectionThread {
            guard !quick else { return .stay }
            onConnectionThread = false
            movesOff += 1
            quickCallsOff = 0
            return .moveOff
        }
        guard quick else {
            quickCallsOff = 0
            return .stay
        }
        quickCallsOff += 1
        guard quickCallsOff >= quickCallsToReturn else { return .stay }
        onConnectionThread = true
        return .moveOn
    }
}
