import Synchronization

/// Wakes the harness's waits when a handler call ends or a publish is recorded, so that a wait
/// checks its condition as soon as it may have changed, without spinning on the executor (which
/// would take a thread from the handlers it waits for).
final class RecordingSignal: Sendable {
    private enum Waiter {
        /// Registered, not yet suspended.
        case starting
        case waiting(CheckedContinuation<Void, Never>)
    }

    private struct State {
        /// How many changes were recorded so far.
        var changes: UInt64 = 0
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())

    /// How many changes were recorded so far: read it before checking a condition, and wait
    /// for a change after it.
    var changes: UInt64 { state.withLock { $0.changes } }

    /// Something was recorded: wakes every wait.
    func signal() {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.changes &+= 1
            var woken: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters {
                guard case .waiting(let continuation) = waiter else { continue }
                woken.append(continuation)
                state.waiters[id] = nil
            }
            return woken
        }
        for continuation in woken { continuation.resume() }
    }

    /// Returns once a change after `seen` is recorded, `limit` has passed, or the task is
    /// cancelled: whichever comes first.
    func wait(forChangeAfter seen: UInt64, atMost limit: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.change(after: seen) }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }

    private func change(after seen: UInt64) async {
        let id = state.withLock { state in
            state.nextWaiter &+= 1
            state.waiters[state.nextWaiter] = .starting
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    // Gone: cancelled before it could suspend.
                    guard state.waiters[id] != nil else { return true }
                    if state.changes != seen {
                        state.waiters[id] = nil
                        return true
                    }
                    state.waiters[id] = .waiting(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            if case .waiting(let continuation) = waiter { continuation.resume() }
        }
    }
}
