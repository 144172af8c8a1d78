import Synchronization

/// Waits for `operation` for at most `limit`. Returns `false` when the limit passed first; the
/// operation then goes on without a waiter. For waits that must end whatever the broker does,
/// such as closing.
func awaitAtMost(_ limit: Duration, _ operation: @escaping @Sendable () async -> Void) async -> Bool {
    let outcome = OneShot()
    return await withCheckedContinuation { continuation in
        outcome.set(continuation)
        let timer = Task {
            try? await Task.sleep(for: limit)
            outcome.resume(returning: false)
        }
        Task {
            await operation()
            timer.cancel()  // thousands of closes must not leave thousands of sleeping timers
            outcome.resume(returning: true)
        }
    }
}

/// A continuation resumed by whichever side comes first.
private final class OneShot: Sendable {
    private let continuation = Mutex<CheckedContinuation<Bool, Never>?>(nil)

    func set(_ continuation: CheckedContinuation<Bool, Never>) {
        self.continuation.withLock { $0 = continuation }
    }

    func resume(returning value: Bool) {
        let waiting = continuation.withLock { state -> CheckedContinuation<Bool, Never>? in
            defer { state = nil }
            return state
        }
        waiting?.resume(returning: value)
    }
}
