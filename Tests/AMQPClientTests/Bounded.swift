import Testing

/// A wait in a broker-free test that cannot hang the suite: the task's value within `limit`,
/// else the task is cancelled and the test fails (every wait of the library ends on
/// cancellation, so the task then ends too).
func value<Value: Sendable>(
    of task: Task<Value, any Error>, within limit: Duration = .seconds(5), _ what: String = "the task"
) async throws -> Value {
    try await withThrowingTaskGroup(of: Value?.self) { group in
        group.addTask { try await task.value }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        if let first = try await group.next(), let value = first { return value }
        task.cancel()
        Issue.record("\(what) did not finish within \(limit)")
        throw CancellationError()
    }
}
