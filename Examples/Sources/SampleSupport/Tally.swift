import Synchronization

/// Counts what each service of a demo handled, once per id (a redelivered event counts once), and
/// lets the demo wait until every service has handled what it should.
public final class Tally: Sendable {
    private struct State {
        var seen: [String: Set<String>] = [:]
        var handledTwice = 0
        var waiters: [Int: (condition: @Sendable ([String: Int]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = [:]
        var nextWaiter = 0
        /// Waits that timed out before their waiter was in place.
        var abandoned: Set<Int> = []
    }

    private let state = Mutex(State())

    public init() {}

    /// Records that `service` handled `id`; returns `false` when it had already.
    @discardableResult
    public func record(_ service: String, _ id: String) -> Bool {
        let (isNew, ready) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
            let isNew = state.seen[service, default: []].insert(id).inserted
            if !isNew { state.handledTwice += 1 }
            let counts = state.seen.mapValues(\.count)
            var ready: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters where waiter.condition(counts) {
                ready.append(waiter.continuation)
                state.waiters[id] = nil
            }
            return (isNew, ready)
        }
        for continuation in ready { continuation.resume() }
        return isNew
    }

    /// How many distinct ids each service handled.
    public var counts: [String: Int] { state.withLock { $0.seen.mapValues(\.count) } }

    /// How many times an id came again to a service that had handled it.
    public var duplicates: Int { state.withLock { $0.handledTwice } }

    /// Waits until `condition` holds for the counts, or `timeout` passes; returns whether it held.
    public func wait(
        upTo timeout: Duration, until condition: @escaping @Sendable ([String: Int]) -> Bool
    ) async -> Bool {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let holds = self.state.withLock { state -> Bool in
                        if condition(state.seen.mapValues(\.count)) { return true }
                        if state.abandoned.remove(id) != nil { return true }
                        state.waiters[id] = (condition, continuation)
                        return false
                    }
                    if holds { continuation.resume() }
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            // Free this wait's waiter (if it is still waiting) so the group can end.
            let waiter = self.state.withLock { state in
                guard let waiter = state.waiters.removeValue(forKey: id) else {
                    state.abandoned.insert(id)
                    return nil as CheckedContinuation<Void, Never>?
                }
                return waiter.continuation
            }
            waiter?.resume()
            group.cancelAll()
            return first
        }
    }
}
