/// Waits for `operation` for at most `limit`, and returns its result, or `nil` when the limit
/// passed first (the operation is then cancelled). For waits that must end whatever the broker
/// does, such as closing.
///
/// Structured: the operation and its timer are child tasks of the caller, which owns them; the
/// caller's cancellation ends both. The operation must end when cancelled (every wait of the
/// library does, see ``CancellableContinuation``).
package func awaitAtMost<Result: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable () async -> Result
) async -> Result? {
    await withTaskGroup(of: Result?.self) { group in
        group.addTask { await operation() }
        group.addTask {
            try? await Task.sleep(for: limit)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}
