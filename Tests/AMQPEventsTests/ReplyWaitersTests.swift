import AMQPClient
import Synchronization
import Testing

@testable import AMQPEvents

/// Request/reply's reader and deadline sweeper, without a broker: replies come from a stream.
@Suite("Request/reply's reader and sweeper end with the task that owns them")
struct ReplyWaitersTests {
    typealias Replies = AsyncThrowingStream<AMQPDelivery, any Error>

    /// Runs `ReplyClient.serve` in a task, as the reply client does; `ended` is set when it returns.
    /// Once it has returned, `probe` tells whether it left a task running.
    static func serve(_ replies: Replies, _ waiters: ReplyWaiters) -> (Task<Void, Never>, ended: Flag, probe: TaskProbe) {
        let ended = Flag()
        let probe = TaskProbe()
        let task = Task {
            await probe.watch { await ReplyClient.serve(replies, into: waiters, readingOn: nil) }
            ended.set()
        }
        return (task, ended, probe)
    }

    final class Flag: Sendable {
        private let value = Mutex(false)
        func set() { value.withLock { $0 = true } }
        var isSet: Bool { value.withLock { $0 } }
    }

    /// Whether `condition` holds within `limit` (checked every millisecond).
    static func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return true
    }

    @Test("cancelling the owning task ends the reader and the sweeper; the waiting request fails with closed, so does a later one")
    func cancellingEndsBoth() async throws {
        let waiters = ReplyWaiters()
        let (replies, source) = Replies.makeStream()  // never ends by itself
        let (serving, ended, probe) = Self.serve(replies, waiters)
        try waiters.register("waiting", deadline: .now + .seconds(60))  // the sweeper now sweeps
        let reply = Task { try await waiters.wait(for: "waiting") }
        serving.cancel()
        #expect(await Self.eventually { ended.isSet }, "the reader or the sweeper did not end")
        #expect(!probe.isHeld, "serve left a task running")
        let error = await #expect(throws: EventError.self) { try await reply.value }
        #expect(error?.code == .closed)
        let later = #expect(throws: EventError.self) { try waiters.register("later", deadline: .now + .seconds(1)) }
        #expect(later?.code == .closed)
        source.finish()
    }

    @Test("when the replies end (the channel closed), the sweeper ends too and the waiting request fails")
    func repliesEndingEndsBoth() async throws {
        let waiters = ReplyWaiters()
        let (replies, source) = Replies.makeStream()
        let (_, ended, probe) = Self.serve(replies, waiters)
        try waiters.register("waiting", deadline: .now + .seconds(60))
        let reply = Task { try await waiters.wait(for: "waiting") }
        source.finish()
        #expect(await Self.eventually { ended.isSet }, "serve did not return")
        #expect(!probe.isHeld, "the sweeper outlived the reader")
        let error = await #expect(throws: EventError.self) { try await reply.value }
        #expect(error?.code == .brokerFailed)
        #expect(waiters.isClosed)
    }

    @Test("the sweeper fails a request at its deadline, at most one sweep late; it wakes again for the next request")
    func deadline() async throws {
        let waiters = ReplyWaiters()
        let (replies, source) = Replies.makeStream()
        let (serving, _, _) = Self.serve(replies, waiters)
        // Twice: the second request comes after the sweeper went idle.
        for attempt in 0..<2 {
            let timeout = Duration.milliseconds(60)
            let start = ContinuousClock.now
            try waiters.register("r\(attempt)", deadline: start + timeout)
            let error = await #expect(throws: EventError.self) { try await waiters.wait(for: "r\(attempt)") }
            let elapsed = start.duration(to: .now)
            #expect(error?.code == .timedOut)
            #expect(elapsed >= timeout)
            // One sweep late at most, and slack for the rest of the suite: in a full parallel run
            // on two cores, tests that read their child processes' pipes block the cooperative
            // threads for seconds (seen: 2.2–2.5 s), and the sweeper waits for a thread too.
            #expect(elapsed < timeout + ReplyClient.sweepInterval + .seconds(5), "fired after \(elapsed)")
        }
        serving.cancel()
        source.finish()
    }
}

/// Detects tasks started inside a scope that outlive it: a task copies the task-local values of
/// the task that starts it (a child task does not, it reads its parent's), so once the scope has
/// returned, only such a task can still hold the token bound in it.
final class TaskProbe: Sendable {
    private final class Token: Sendable {}
    private struct Weak { weak var token: Token? }

    @TaskLocal private static var current: Token?
    private let token = Mutex(Weak())

    /// Runs `body` with a new token bound, which the probe holds only weakly.
    func watch<Result>(_ body: () async throws -> Result) async rethrows -> Result {
        let token = Token()
        self.token.withLock { $0.token = token }
        return try await Self.$current.withValue(token) { try await body() }
    }

    /// Whether a task started in the watched scope still runs.
    var isHeld: Bool { token.withLock { $0.token != nil } }
}
