public import AMQPClient
public import AMQPEvents
import Synchronization

/// Runs an application's subscriptions on an ``AMQPClient/InMemoryBroker``, for tests that need
/// no RabbitMQ: the real `EventBus` pipeline (routing by type, retries through delay queues,
/// parking, deduplication, request/reply) over an in-process broker, with what was handled
/// recorded and the broker's clock in the test's hands.
///
/// ```swift
/// @Test func paymentRetriesThenCharges() async throws {
///     try await EventTestHarness.withHarness { harness in
///         try await harness.run([payments]) {
///             try await harness.bus.publish(OrderPlaced(orderId: "1", userId: "u", amount: 5), to: "orders")
///             try await harness.waitUntilHandled(1)          // failed once
///             try await harness.advance(by: .seconds(10))      // the delayed retry comes back
///             try await harness.waitUntilHandled(2)
///         }
///         #expect(harness.handled.map(\.outcome) == [.failed("card declined"), .succeeded])
///     }
/// }
/// ```
public final class EventTestHarness: Sendable {
    /// One handler call, as the harness saw it.
    public struct Handled: Sendable, Equatable {
        public enum Outcome: Sendable, Equatable {
            case succeeded
            /// The handler (or a middleware after the harness's) threw; the error's description.
            case failed(String)
        }

        public var type: String
        public var messageID: String
        public var queue: String
        public var retryAttempt: Int
        public var outcome: Outcome
    }

    public let broker: InMemoryBroker
    public let bus: EventBus
    public let connection: AMQPConnection
    private let recorder: Recorder

    private init(broker: InMemoryBroker, connection: AMQPConnection, bus: EventBus, recorder: Recorder) {
        self.broker = broker
        self.connection = connection
        self.bus = bus
        self.recorder = recorder
    }

    /// Runs `body` with a harness on a new in-memory broker (a manual clock unless told), and
    /// closes it afterwards. `configuration` is the bus's; the harness records handler calls
    /// with a middleware of its own, outermost.
    public static func withHarness<Result>(
        clock: InMemoryBroker.Clock = .manual(.now), configuration: EventBus.Configuration = .init(),
        _ body: (EventTestHarness) async throws -> Result
    ) async throws -> Result {
        let broker = InMemoryBroker(clock: clock)
        let connection = try await AMQPConnection.connect(to: broker)
        let recorder = Recorder()
        var configuration = configuration
        configuration.middleware.insert(recorder, at: 0)
        let bus = EventBus(connection: connection, configuration: configuration)
        let harness = EventTestHarness(broker: broker, connection: connection, bus: bus, recorder: recorder)
        do {
            let result = try await body(harness)
            await bus.close()
            await connection.close()
            return result
        } catch {
            await bus.close()
            await connection.close()
            throw error
        }
    }

    /// Runs `subscriptions` while `body` runs, then stops them.
    public func run(_ subscriptions: [EventSubscription], _ body: () async throws -> Void) async throws {
        var started: [RunningSubscription] = []
        for subscription in subscriptions { started.append(try await bus.start(subscription)) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for subscription in started { group.addTask { try await subscription.run() } }
            do {
                try await body()
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }

    /// The handler calls so far, in the order they ended.
    public var handled: [Handled] { recorder.calls.withLock { $0 } }

    /// Waits until `count` handler calls have ended (bounded by `limit` of real time).
    public func waitUntilHandled(_ count: Int, within limit: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + limit
        while handled.count < count {
            guard ContinuousClock.now < deadline else {
                throw EventError(
                    code: .timedOut, message: "\(handled.count) of \(count) handler calls ended within \(limit)")
            }
            await Task.yield()
            try Task.checkCancellation()
        }
    }

    /// Waits until nothing is in flight (see ``AMQPClient/InMemoryBroker/isIdle``): a failed
    /// call's delayed retry, say, has reached its delay queue.
    public func waitUntilIdle(within limit: Duration = .seconds(5)) async throws {
        let deadline = ContinuousClock.now + limit
        while !broker.isIdle {
            guard ContinuousClock.now < deadline else {
                throw EventError(code: .timedOut, message: "the broker still had messages in flight after \(limit)")
            }
            await Task.yield()
            try Task.checkCancellation()
        }
    }

    /// Once nothing is in flight, moves the broker's clock: what falls due (a delayed retry)
    /// comes back. Waiting first keeps a retry scheduled just now from missing the move.
    public func advance(by duration: Duration) async throws {
        try await waitUntilIdle()
        broker.advance(by: duration)
    }

    /// What waits in `queue`'s parking lot.
    public func parked(in queue: String) async throws -> [ParkedMessage] {
        try await bus.parkedMessages(of: queue)
    }

    /// Waits until `queue`'s parking lot holds `count` messages (a failed handler call ends
    /// before its event is parked); returns them.
    public func waitUntilParked(_ count: Int, in queue: String, within limit: Duration = .seconds(5)) async throws
        -> [ParkedMessage]
    {
        let deadline = ContinuousClock.now + limit
        while true {
            let parked = try await self.parked(in: queue)
            if parked.count >= count { return parked }
            guard ContinuousClock.now < deadline else {
                throw EventError(code: .timedOut, message: "\(parked.count) of \(count) parked in \(queue) within \(limit)")
            }
            await Task.yield()
            try Task.checkCancellation()
        }
    }
}

/// Records every handler call's outcome, outermost in the pipeline.
private final class Recorder: EventMiddleware {
    let calls = Mutex<[EventTestHarness.Handled]>([])

    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        let context = event.context
        func record(_ outcome: EventTestHarness.Handled.Outcome) {
            calls.withLock {
                $0.append(
                    .init(
                        type: context.metadata.type, messageID: context.metadata.messageID, queue: context.queue,
                        retryAttempt: context.retryAttempt, outcome: outcome))
            }
        }
        do {
            try await next(event)
            record(.succeeded)
        } catch {
            record(.failed("\(error)"))
            throw error
        }
    }
}
