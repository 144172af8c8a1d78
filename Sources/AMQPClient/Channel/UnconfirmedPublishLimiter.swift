import DequeModule
import Synchronization

/// Bounds how many publishes of a channel wait for the broker's confirm
/// (``AMQPConnection/Configuration/unconfirmedPublishLimit``): past it, a publisher waits until
/// confirms come back, so a broker that confirms slowly, or not at all, cannot make the client
/// keep an unbounded number of trackers (and, with republishing on, messages).
final class UnconfirmedPublishLimiter: Sendable {
    private struct State {
        var outstanding = 0
        var waiters: Deque<CancellableContinuation<Void>> = []
    }

    private let state = Mutex(State())
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// Takes a place for one more unconfirmed publish, waiting while all are taken. Throws
    /// ``AMQPError/Code/cancelled`` when the task is cancelled while it waits (no place taken).
    func acquire() async throws(AMQPError) {
        let limit = self.limit
        if state.withLock({ state in
            guard state.outstanding < limit else { return false }
            state.outstanding += 1
            return true
        }) {
            return
        }
        try await withCancellableContinuation { (continuation: CancellableContinuation<Void>) in
            let granted = state.withLock { state in
                if state.outstanding < limit {
                    state.outstanding += 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if granted { continuation.resume() }
        }
    }

    /// A publish was confirmed, refused or failed: its place goes to the next waiter, if any.
    func release() {
        while true {
            let next = state.withLock { state -> CancellableContinuation<Void>? in
                if let waiter = state.waiters.popFirst() { return waiter }  // the place passes on
                state.outstanding -= 1
                return nil
            }
            // A waiter whose task was cancelled took no place: the next one gets it.
            guard let next, !next.resume() else { return }
        }
    }

    var outstanding: Int { state.withLock { $0.outstanding } }

    /// Publishers waiting for a place (cancelled ones included until a place skips them).
    var waiting: Int { state.withLock { $0.waiters.count } }
}
