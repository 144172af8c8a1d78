public import AMQPClient
public import AMQPEvents
import Synchronization

/// Runs an application's subscriptions, responders and relays on an ``AMQPClient/InMemoryBroker``,
/// for tests that need no RabbitMQ: the real `EventBus` pipeline (routing by type, retries
/// through delay queues, parking, deduplication, request/reply) over an in-process broker, with
/// what was published and handled recorded and the broker's clock in the test's hands.
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

    /// One event the application published (or sent, or requested), as the broker got it.
    public struct Published: Sendable, Equatable {
        public var metadata: EventMetadata
        public var body: [UInt8]
        /// `""` for a work queue or a request, whose queue is then the ``routingKey``.
        public var exchange: String
        public var routingKey: String

        public var type: String { metadata.type }
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
    /// (with a middleware of its own, outermost) and publishes (innermost).
    public static func withHarness<Result>(
        clock: InMemoryBroker.Clock = .manual(.now), configuration: EventBus.Configuration = .init(),
        _ body: (EventTestHarness) async throws -> Result
    ) async throws -> Result {
        let broker = InMemoryBroker(clock: clock)
        let connection = try await AMQPConnection.connect(to: broker)
        let recorder = Recorder()
        var configuration = configuration
        configuration.middleware.insert(recorder, at: 0)
        // Innermost: it records what the application's middleware let through, as sent.
        configuration.publishMiddleware.append(recorder)
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
        try await run({ _, parts in for subscription in subscriptions { parts.subscribe(subscription) } }, body)
    }

    /// Runs what `setUp` lists (the same closure an ``AMQPEvents/EventService`` takes: its
    /// subscriptions, responders and relays) while `body` runs, then stops them. Every
    /// subscription and responder is consuming before `body` starts.
    public func run(
        _ setUp: @Sendable (EventBus, inout EventService.Parts) async throws -> Void, _ body: () async throws -> Void
    ) async throws {
        var parts = EventService.Parts()
        try await setUp(bus, &parts)
        let (bus, logger, listed) = (self.bus, self.bus.logger, parts)
        let consuming = AsyncStream<Bool>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await listed.run(on: bus, logger: logger) {
                        consuming.continuation.yield(true)
                        consuming.continuation.finish()
                    }
                } catch {
                    consuming.continuation.finish()
                    throw error
                }
            }
            do {
                // Every subscription and responder consumes before the body runs; if one could not
                // start, its error.
                var started = false
                for await consumes in consuming.stream { started = consumes }
                if !started { try await group.next() }
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

    /// The handler calls of events of `type` so far.
    public func handled<Event: AMQPEvent>(_ type: Event.Type) -> [Handled] {
        handled.filter { $0.type == Event.eventType }
    }

    /// What the application published so far (events, work-queue sends, requests), in order.
    public var published: [Published] { recorder.published.withLock { $0 } }

    /// The events of `type` published so far, decoded.
    public func published<Event: AMQPEvent>(_ type: Event.Type) throws -> [Event] {
        try published.filter { $0.type == Event.eventType }.map { try bus.configuration.coder.decode(Event.self, from: $0.body) }
    }

    /// The handler calls that failed and whose event came back for another try: each failure
    /// followed by a later call of the same message id on the same queue.
    public var retried: [Handled] {
        let calls = handled
        return calls.enumerated().compactMap { index, call in
            guard case .failed = call.outcome else { return nil }
            let again = calls[(index + 1)...].contains { $0.messageID == call.messageID && $0.queue == call.queue }
            return again ? call : nil
        }
    }

    /// Waits until `count` handler calls have ended (bounded by `limit` of real time).
    public func waitUntilHandled(_ count: Int, within limit: Duration = .seconds(5)) async throws {
        try await poll("\(count) handler calls ended (\(handled.count) so far)", within: limit) { handled.count >= count }
    }

    /// Waits until `condition` holds (bounded by `limit` of real time), checking it as the
    /// handlers run; `what` names it in the timeout's error, which also says where things stand
    /// (the last handler calls, what was published, the queues holding messages). `condition`
    /// may await: a store's count, say.
    public func waitUntil(
        _ what: String, within limit: Duration = .seconds(5), _ condition: () async throws -> Bool
    ) async throws {
        try await poll(what, within: limit, condition)
    }

    /// The harness's one bounded wait: checks `condition` each time a handler call ends or a
    /// publish is recorded, and at least every few milliseconds (for conditions on the broker or a
    /// store), until it holds; or fails with `what` (evaluated then, so it can say how far it got)
    /// and where things stand, once `limit` has passed.
    private func poll(
        _ what: @autoclosure () -> String, within limit: Duration, _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + limit
        var recheck = Duration.milliseconds(1)
        while true {
            let seen = recorder.signal.changes
            if try await condition() { return }
            let left = ContinuousClock.now.duration(to: deadline)
            guard left > .zero else {
                throw EventError(code: .timedOut, message: "not within \(limit): \(what())\n\(progressReport())")
            }
            await recorder.signal.wait(forChangeAfter: seen, atMost: min(recheck, left))
            try Task.checkCancellation()
            recheck = min(recheck * 2, .milliseconds(20))
        }
    }

    /// Where things stand, for a wait that timed out: the last handler calls (a failed one says
    /// why), what was published, and the queues that hold messages.
    private func progressReport() -> String {
        let calls = handled
        let shown = calls.suffix(10)
        var lines = ["  handler calls (\(calls.count))\(calls.count > shown.count ? ", the last \(shown.count)" : ""):"]
        if calls.isEmpty { lines[0] += " none" }
        for call in shown {
            let retry = call.retryAttempt > 0 ? " (retry \(call.retryAttempt))" : ""
            let outcome =
                switch call.outcome {
                case .succeeded: "succeeded"
                case .failed(let error): "failed: \(error)"
                }
            lines.append("    \(call.type) from \(call.queue)\(retry): \(outcome)")
        }
        // Each type once, in the order first published, with how often.
        var types: [(name: String, count: Int)] = []
        for type in published.map(\.type) {
            if let index = types.firstIndex(where: { $0.name == type }) { types[index].count += 1 } else { types.append((type, 1)) }
        }
        let publishedText = types.map { $0.count > 1 ? "\($0.name) ×\($0.count)" : $0.name }.joined(separator: ", ")
        lines.append("  published: " + (types.isEmpty ? "nothing" : publishedText))
        let holding = broker.queueNames.compactMap { name -> String? in
            let (ready, unacknowledged) = (broker.messageCount(of: name) ?? 0, broker.unacknowledgedCount(of: name) ?? 0)
            return ready + unacknowledged > 0 ? "\(name) (\(ready) ready, \(unacknowledged) unacknowledged)" : nil
        }
        lines.append("  queues holding messages: " + (holding.isEmpty ? "none" : holding.joined(separator: ", ")))
        return lines.joined(separator: "\n")
    }

    /// Waits until nothing is in flight (see ``AMQPClient/InMemoryBroker/isIdle``): a failed
    /// call's delayed retry, say, has reached its delay queue.
    public func waitUntilIdle(within limit: Duration = .seconds(5)) async throws {
        try await poll("nothing in flight on the broker", within: limit) { broker.isIdle }
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
        var parked: [ParkedMessage] = []
        try await poll("\(count) parked in \(queue) (\(parked.count) so far)", within: limit) {
            parked = try await self.parked(in: queue)
            return parked.count >= count
        }
        return parked
    }
}

/// Records every handler call's outcome and every publish, outermost in the pipelines.
private final class Recorder: EventMiddleware, PublishMiddleware {
    let calls = Mutex<[EventTestHarness.Handled]>([])
    let published = Mutex<[EventTestHarness.Published]>([])
    /// Wakes the harness's waits after each record.
    let signal = RecordingSignal()

    func handle(_ event: IncomingEvent, next: @escaping @Sendable (IncomingEvent) async throws -> Void) async throws {
        let context = event.context
        func record(_ outcome: EventTestHarness.Handled.Outcome) {
            calls.withLock {
                $0.append(
                    .init(
                        type: context.metadata.type, messageID: context.metadata.messageID, queue: context.queue,
                        retryAttempt: context.retryAttempt, outcome: outcome))
            }
            signal.signal()
        }
        do {
            try await next(event)
            record(.succeeded)
        } catch {
            record(.failed("\(error)"))
            throw error
        }
    }

    /// Records what the broker took, once it is confirmed.
    func publish(_ events: [OutgoingEvent], next: @escaping @Sendable ([OutgoingEvent]) async throws -> Void) async throws {
        try await next(events)
        published.withLock {
            $0 += events.map { .init(metadata: $0.metadata, body: $0.body, exchange: $0.exchange, routingKey: $0.routingKey) }
        }
        signal.signal()
    }
}
