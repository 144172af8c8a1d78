import AMQPClient
import Synchronization

/// Wakes the harness's waits when a handler call ends or a publish is recorded, so that a wait
/// checks its condition as soon as it may have changed, without spinning on the executor (which
/// would take a thread from the handlers it waits for).
final class RecordingSignal: Sendable {
    private struct State {
        /// How many changes were recorded so far.
        var changes: UInt64 = 0
        /// The waits since the last change. One whose limit passed stays until the next change
        /// (resuming it then does nothing): at most one per pause of a wait.
        var waiters: [CancellableContinuation<Void>] = []
    }

    private let state = Mutex(State())

    /// How many changes were recorded so far: read it before checking a condition, and wait
    /// for a change after it.
    var changes: UInt64 { state.withLock { $0.changes } }

    /// How many waits are registered (for tests: a wait has begun).
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    /// Something was recorded: wakes every wait.
    func signal() {
        let woken = state.withLock { state in
            state.changes &+= 1
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns once a change after `seen` is recorded, `limit` has passed, or the task is
    /// cancelled: whichever comes first.
    func wait(forChangeAfter seen: UInt64, atMost limit: Duration) async {
        _ = await awaitAtMost(limit) {
            try? await withCancellableContinuation { (waiter: CancellableContinuation<Void>) in
                let changed = self.state.withLock { state in
                    if state.changes == seen { state.waiters.append(waiter) }
                    return state.changes != seen
                }
                if changed { waiter.resume() }
            }
        }
    }
}
