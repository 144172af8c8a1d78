import AMQPClient
import Foundation
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

@testable import AMQPEvents

/// Issue 21, "No orphan tasks": what the event bus starts ends with what owns it.
@Suite("Events: no task outlives what owns it")
struct TaskOwnershipTests {
    @Test("closing the bus ends request/reply's reader: a waiting request fails at once, the channel closes, later calls fail")
    func closeEndsReplies() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).silent"
            queues.withLock { $0.append(queue) }
            try await bus.declareResponder(queue: queue)  // nobody answers
            let client = try await bus.replies.get()
            try await withThrowingTaskGroup(of: (EventError?, ContinuousClock.Instant).self) { group in
                group.addTask {
                    try await withTimeout(10, "the waiting request to fail") {
                        do throws(EventError) {
                            _ = try await bus.request(Echo(text: "anyone?"), to: queue, timeout: .seconds(30))
                            return (nil, .now)
                        } catch {
                            return (error, .now)
                        }
                    }
                }
                // The request waits once it is in the queue.
                _ = try await withTestConnection { admin in
                    try await admin.openChannel().waitForQueue(queue, within: 5, "the request") { $0.messageCount == 1 }
                }
                let closing = ContinuousClock.now
                await bus.close()
                let (error, failedAt) = try await group.next()!
                let failedAfter = closing.duration(to: failedAt)
                print("request/reply: a request waiting when the bus closed failed after \(failedAfter)")
                #expect(error?.code == .closed)
                #expect(failedAfter < .seconds(1))
            }
            // The reading ended (close waited for it) and the reply channel is closed.
            try await withTimeout(1, "the reply reader to end") { await client.serving.value }
            #expect(!client.channel.isOpen)
            let later = await #expect(throws: EventError.self) {
                try await bus.request(Echo(text: "after close"), to: queue)
            }
            #expect(later?.code == .closed)
            let publish = await #expect(throws: EventError.self) {
                try await bus.send(Charged(orderId: "after close", amount: 1), toQueue: queue)
            }
            #expect(publish?.code == .closed)
        }
    }

    @Test("releasing a bus that made requests ends its reply reader and cancels the reply consumer on the broker")
    func releaseEndsReplies() async throws {
        let connection = try await TestBroker.connect()
        let queue = TestBroker.uniqueName("replies")
        do {
            try await checkReleaseEndsReplies(connection, queue)
        } catch {
            await connection.close()
            try? await withTestConnection { _ = try await $0.openChannel().deleteQueue(queue) }
            throw error
        }
        await connection.close()
        try await withTestConnection { _ = try await $0.openChannel().deleteQueue(queue) }
    }

    private func checkReleaseEndsReplies(_ connection: AMQPConnection, _ queue: String) async throws {
        try await withTestConnection { admin in
            let channel = try await admin.openChannel()
            try await channel.enablePublisherConfirms()
            var bus: EventBus? = EventBus(connection: connection)
            try await bus!.declareResponder(queue: queue)
            // A request answered by hand, which tells the broker's reply-to address of the bus.
            let replyTo = try await withThrowingTaskGroup(of: Void.self) { [bus] group in
                group.addTask {
                    _ = try await withTimeout(5, "the reply") { try await bus!.request(Echo(text: "hi"), to: queue, timeout: .seconds(5)) }
                }
                let request = try await channel.waitForMessage(from: queue)
                let replyTo = try #require(request.properties.replyTo)
                try await channel.publish(
                    Array(#"{"text":"HI"}"#.utf8), routingKey: replyTo,
                    properties: AMQPProperties(correlationID: request.properties.correlationID, type: Echoed.eventType)
                ).confirmed()
                try await group.next()
                return replyTo
            }
            let serving = try await bus!.replies.get().serving
            bus = nil
            try await withTimeout(5, "the reply reader of the released bus to end") { await serving.value }
            // The broker forgets the reply consumer: a mandatory reply to its address comes back.
            try await withTimeout(5, "a reply to the released bus to be returned") {
                while true {
                    do throws(AMQPError) {
                        try await channel.publish([], routingKey: replyTo, mandatory: true).confirmed()
                    } catch where error.code == .messageReturned {
                        return
                    }
                    try await pollPause()
                }
            }
        }
    }

    @Test("a request times out within its bound", arguments: [Duration.milliseconds(100), .milliseconds(300)])
    func timeoutWithinBound(_ timeout: Duration) async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).silent"
            queues.withLock { $0.append(queue) }
            try await bus.declareResponder(queue: queue)
            _ = try? await bus.request(Echo(text: "warm-up"), to: queue, timeout: .milliseconds(10))
            var worst = Duration.zero
            for _ in 0..<5 {
                let start = ContinuousClock.now
                let error = await #expect(throws: EventError.self) {
                    try await bus.request(Echo(text: "anyone?"), to: queue, timeout: timeout)
                }
                let elapsed = start.duration(to: .now)
                #expect(error?.code == .timedOut)
                #expect(elapsed >= timeout)
                worst = max(worst, elapsed)
            }
            print("request/reply: a \(timeout) timeout fired after at most \(worst)")
            // One sweep interval (25 ms) late at most, with room for a loaded machine.
            // A sweep late at most, and slack for a machine busy with the rest of the suite.
            #expect(worst < timeout + .seconds(1))
        }
    }

    @Test("a graceful shutdown under a silent broker stops the consumer without a task of its own and returns in bounded time")
    func gracefulShutdownUnderSilentBroker() async throws {
        let closeTimeout = Duration.seconds(1)
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy { $0.closeTimeout = closeTimeout }
        defer { proxy.stop() }
        try await withEventBus(connection: connection) { bus, domain, queues in
            let queue = "\(domain).work"
            queues.withLock { $0.append(queue) }
            let seen = Seen()
            let subscription = EventSubscription.workQueue(queue).on(Charged.self) { task, _ in seen.add(task.orderId) }
            let running = try await bus.start(subscription)
            try await testGracefulShutdown { trigger in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await withTimeout(10, "the subscription to return") { try await running.run() } }
                    try await bus.send(Charged(orderId: "first", amount: 1), toQueue: queue)
                    try await seen.wait(for: 1, "the subscription to handle an event")  // it consumes: the handler is installed
                    proxy.mode = .blackHole
                    let started = ContinuousClock.now
                    // Whatever the shutdown handler starts inherits the probe; with no such task
                    // nothing holds it once the trigger has returned.
                    let probe = TaskProbe()
                    probe.watch { trigger.triggerGracefulShutdown() }
                    #expect(!probe.isHeld, "the graceful-shutdown handler left a task running")
                    try await group.next()
                    let returnedAfter = started.duration(to: .now)
                    print("graceful shutdown under a silent broker: run() returned after \(returnedAfter)")
                    // The channel's close waits closeTimeout + 0.5 s for a silent broker.
                    #expect(returnedAfter < closeTimeout + .seconds(2))
                }
            }
            proxy.mode = .forward
        }
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
    func watch<Result>(_ body: () throws -> Result) rethrows -> Result {
        let token = Token()
        self.token.withLock { $0.token = token }
        return try Self.$current.withValue(token) { try body() }
    }

    /// Whether a task started in the watched scope still runs.
    var isHeld: Bool { token.withLock { $0.token != nil } }
}
