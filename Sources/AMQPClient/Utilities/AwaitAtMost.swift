import Synchronization

/// Waits for `operation` for at most `limit`, and returns its result, or `nil` when the limit
/// passed first; the operation then goes on without a waiter. For waits that must end whatever
/// the broker does, such as closing.
func awaitAtMost<Result: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable () async -> Result
) async -> Result? {
    let outcome = OneShot<Result?>()
    return await withCheckedContinuation { continuation in
        outcome.set(continuation)
        let timer = Task {
            try? await Task.sleep(for: limit)
            outcome.resume(returning: nil)
        }
        Task {
            let result = await operation()
            timer.cancel()  // thousands of closes must not leave thousands of sleeping timers
            outcome.resume(returning: result)
        }
    }
}

/// A continuation resumed by whichever side comes first.
private final class OneShot<Value: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Value, Never>?>(nil)

    func set(_ continuation: CheckedContinuation<Value, Never>) {
        self.continuation.withLock { $0 = continuation }
    }

    func resume(returning value: Value) {
        let waiting = continuation.withLock { state -> CheckedContinuation<Value, Never>? in
            defer { state = nil }
            return state
        }
        waiting?.resume(returning: value)
    }
}
