import Synchronization

/// A continuation that the waiting task's cancellation resumes at once, with
/// ``AMQPError/Code/cancelled``. Whoever resumes it later (the I/O thread with a reply, a
/// confirm, room in a buffer) finds it resumed already and is told so: what that resume carried
/// is not lost unnoticed (see ``resume(with:)``).
///
/// Every wait of the library that may last (a reply, a confirm, room to publish, the end of
/// the connection) is one of these, so no task hangs past its cancellation.
package final class CancellableContinuation<Value: Sendable>: Sendable {
    private enum State {
        case waiting(CheckedContinuation<Value, any Error>?)
        case cancelled
        case resumed
    }

    private let state = Mutex(State.waiting(nil))

    /// Not yet attached to a waiting task (``withCancellableContinuation(cancellable:_:)``
    /// attaches it); a resume before that finds nobody waiting.
    init() {}

    fileprivate func attach(_ continuation: CheckedContinuation<Value, any Error>) {
        let cancelledFirst = state.withLock { state -> Bool in
            guard case .waiting = state else { return true }
            state = .waiting(continuation)
            return false
        }
        if cancelledFirst { continuation.resume(throwing: AMQPError.cancelledWait) }
    }

    fileprivate func cancel() {
        let waiting = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            guard case .waiting(let continuation) = state else { return nil }
            state = .cancelled
            return continuation
        }
        waiting?.resume(throwing: AMQPError.cancelledWait)
    }

    /// Resumes the waiting task, unless its cancellation did already. Returns whether this
    /// resumed it (a place or a result handed over to a cancelled waiter must go elsewhere).
    @discardableResult
    package func resume(with result: Result<Value, any Error>) -> Bool {
        let waiting = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            guard case .waiting(let continuation) = state, let continuation else { return nil }
            state = .resumed
            return continuation
        }
        waiting?.resume(with: result)
        return waiting != nil
    }

    @discardableResult
    package func resume(returning value: Value) -> Bool { resume(with: .success(value)) }

    @discardableResult
    package func resume(throwing error: any Error) -> Bool { resume(with: .failure(error)) }
}

extension CancellableContinuation where Value == Void {
    @discardableResult
    package func resume() -> Bool { resume(with: .success(())) }
}

/// Runs `body` with a continuation that the task's cancellation resumes with
/// ``AMQPError/Code/cancelled``; returns what it is resumed with.
package func withCancellableContinuation<Value: Sendable>(
    _ body: (CancellableContinuation<Value>) -> Void
) async throws(AMQPError) -> Value {
    let continuation = CancellableContinuation<Value>()
    do {
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { checked in
                continuation.attach(checked)
                body(continuation)
            }
        } onCancel: {
            continuation.cancel()
        }
    } catch {
        throw AMQPError.wrap(error)
    }
}
