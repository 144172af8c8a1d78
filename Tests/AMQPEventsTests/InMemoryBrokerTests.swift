import AMQPClient
import AMQPEvents
import Synchronization
import Testing

struct Ordered: AMQPEvent, Equatable {
    static let eventType = "test.Ordered"
    var id: Int
}

struct Ping: AMQPRequest {
    typealias Response = Pong
    static let eventType = "test.Ping"
    var text: String
}

struct Pong: AMQPEvent {
    static let eventType = "test.Pong"
    var text: String
}

/// Waits (bounded) until `condition` holds, checking it every millisecond: a `Task.yield()` loop
/// would keep a cooperative thread from the handlers it waits for.
func eventually(_ what: String, within limit: Duration = .seconds(5), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + limit
    while !condition() {
        try #require(ContinuousClock.now < deadline, "timed out waiting for \(what)")
        try await Task.sleep(for: .milliseconds(1))
    }
}

final class Handled: Sendable {
    let ids = Mutex<[Int]>([])
    func add(_ id: Int) { ids.withLock { $0.append(id) } }
    var all: [Int] { ids.withLock { $0 } }
}

@Suite("The in-memory broker (no RabbitMQ)")
struct InMemoryBrokerTests {
    @Test("publish with confirms, consume and ack on a client connection to the in-memory broker")
    func publishConsumeAck() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let channel = try await connection.openChannel()
        try await channel.enablePublisherConfirms()
        try await channel.declareQueue("work", durable: true)
        for index in 0..<3 {
            try await channel.publish(Array("m\(index)".utf8), exchange: "", routingKey: "work").confirmed()
        }
        #expect(broker.messageCount(of: "work") == 3)
        let consumer = try await channel.consume(queue: "work")
        var bodies: [String] = []
        for try await delivery in consumer {
            bodies.append(String(decoding: delivery.body, as: UTF8.self))
            try await delivery.ack()
            if bodies.count == 3 { break }
        }
        #expect(bodies == ["m0", "m1", "m2"])
        #expect(broker.messageCount(of: "work") == 0)
        await connection.close()
    }

    @Test("a quorum queue counts returns (x-delivery-count) and dead-letters a message returned more often than its x-delivery-limit")
    func quorumDeliveryLimit() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let channel = try await connection.openChannel()
        try await channel.enablePublisherConfirms()
        try await channel.declareQueue("poison.dead", durable: true)
        try await channel.declareQueue(
            "poison", type: .quorum(.init(deliveryLimit: 2)),
            arguments: ["x-dead-letter-exchange": "", "x-dead-letter-routing-key": "poison.dead"])
        try await channel.publish(Array("p".utf8), exchange: "", routingKey: "poison").confirmed()
        // basic.get, so that each step ends (a consumer loop would wait on if the message went).
        var counts: [Int?] = []
        for _ in 0..<3 {
            let taken = try #require(try await channel.get(from: "poison", noAck: false))
            counts.append(taken.properties.headers?["x-delivery-count"]?.integerValue)
            try await taken.reject(requeue: true)  // a consumer that gives it back each time
        }
        #expect(counts == [0, 1, 2], "basic.get gets the count from the first delivery on; each return adds one")
        let dead = try #require(try await channel.get(from: "poison.dead"))
        let death = dead.properties.headers?["x-death"]
        #expect(dead.properties.headers?["x-first-death-reason"] == "delivery_limit", "\(String(describing: death))")
        #expect(broker.messageCount(of: "poison") == 0, "the third return went to the dead-letter queue, not back")
        await connection.close()
    }

    @Test("a quorum queue's delivery limit: a nack's return does not count (RabbitMQ 4.3), a closed channel's does")
    func quorumDeliveryLimitNackAndClose() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let setUp = try await connection.openChannel()
        try await setUp.enablePublisherConfirms()
        try await setUp.declareQueue("limited", type: .quorum(.init(deliveryLimit: 1)))
        try await setUp.publish(Array("m".utf8), exchange: "", routingKey: "limited").confirmed()
        // basic.get, so that no consumer holds the message between the steps.
        var counts: [Int?] = []
        for _ in 0..<3 {
            let taken = try #require(try await setUp.get(from: "limited", noAck: false))
            counts.append(taken.properties.headers?["x-delivery-count"]?.integerValue)
            try await taken.nack(requeue: true)
        }
        #expect(counts == [0, 0, 0], "nacks do not count")
        // Taken and left unsettled by a channel that closes: each such return counts.
        var closedCounts: [Int?] = []
        for _ in 0..<2 {
            let closing = try await connection.openChannel()
            let taken = try #require(try await closing.get(from: "limited", noAck: false))
            closedCounts.append(taken.properties.headers?["x-delivery-count"]?.integerValue)
            await closing.close()
        }
        #expect(closedCounts == [0, 1])
        #expect(broker.messageCount(of: "limited") == 0, "the second counted return is past the limit of 1: dropped")
        await connection.close()
    }

    @Test("an unroutable mandatory publish is returned; a missing queue closes the channel with 404")
    func returnsAndRefusals() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let channel = try await connection.openChannel()
        try await channel.enablePublisherConfirms()
        let returned = await #expect(throws: AMQPError.self) {
            try await channel.publish([1], exchange: "", routingKey: "nowhere", mandatory: true).confirmed()
        }
        #expect(returned?.code == .messageReturned)
        let missing = await #expect(throws: AMQPError.self) { try await channel.declareQueue("nope", passive: true) }
        #expect(missing?.replyCode == 404)
        #expect(!channel.isOpen)
        await connection.close()
    }

    @Test("EventBus on the in-memory broker: pub/sub by type, in order at concurrency 1")
    func eventBus() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let bus = EventBus(connection: connection)
        let handled = Handled()
        let subscription = EventSubscription.publishSubscribe(exchange: "orders", service: "audit").on(Ordered.self) { event, _ in
            handled.add(event.id)
        }
        let running = try await bus.start(subscription)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await running.run() }
            for id in 0..<20 { try await bus.publish(Ordered(id: id), to: "orders") }
            try await eventually("20 events") { handled.all.count == 20 }
            group.cancelAll()
        }
        #expect(handled.all == Array(0..<20))
        await bus.close()
        await connection.close()
    }

    @Test("a delayed retry waits on the broker's clock: it comes back only when the test advances it")
    func delayedRetryOnManualClock() async throws {
        let broker = InMemoryBroker(clock: .manual(.now))
        let connection = try await AMQPConnection.connect(to: broker)
        let bus = EventBus(connection: connection)
        let calls = Handled()
        let subscription = EventSubscription.workQueue("retry.q")
            .retrying(RetryPolicy(immediateRetries: 0, delays: [.seconds(60)], jitter: 0))
            .on(Ordered.self) { event, context in
                calls.add(context.retryAttempt)
                if context.retryAttempt == 0 { throw Failing() }
            }
        let running = try await bus.start(subscription)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await running.run() }
            try await bus.send(Ordered(id: 1), toQueue: "retry.q")
            try await eventually("the first call") { calls.all == [0] }
            try await eventually("the retry to wait in its delay queue") { broker.messageCount(of: EventTopology.retryQueue(of: "retry.q", step: 1)) == 1 }
            broker.advance(by: .seconds(59))
            #expect(calls.all == [0], "not yet: 59 of 60 seconds")
            broker.advance(by: .seconds(1))
            try await eventually("the retried call") { calls.all == [0, 1] }
            group.cancelAll()
        }
        await bus.close()
        await connection.close()
    }

    @Test("request/reply over direct reply-to on the in-memory broker")
    func requestReply() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let bus = EventBus(connection: connection)
        try await bus.declareResponder(queue: "ping")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await bus.respond(to: "ping", with: Ping.self) { request, _ in Pong(text: request.text.uppercased()) }
            }
            let reply = try await bus.request(Ping(text: "hello"), to: "ping", timeout: .seconds(5))
            #expect(reply.text == "HELLO")
            group.cancelAll()
        }
        await bus.close()
        await connection.close()
    }
}

extension InMemoryBrokerTests {
    @Test("a handler that fails for good parks the event with why; the parking lot can be listed and replayed")
    func parkingLotAndReplay() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let bus = EventBus(connection: connection)
        let calls = Handled()
        let failing = Mutex(true)
        let subscription = EventSubscription.workQueue("park.q").retrying(.none).on(Ordered.self) { event, _ in
            calls.add(event.id)
            if failing.withLock({ $0 }) { throw DoNotRetry(Failing()) }
        }
        let running = try await bus.start(subscription)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await running.run() }
            try await bus.send(Ordered(id: 7), toQueue: "park.q")
            try await eventually("the event to be parked") { broker.messageCount(of: "park.q.parked") == 1 }
            let parked = try await bus.parkedMessages(of: "park.q")
            #expect(parked.count == 1)
            #expect(parked.first?.reason == "nonRetryable")
            #expect(parked.first?.type == Ordered.eventType)
            #expect(broker.messageCount(of: "park.q.parked") == 1, "listing leaves them parked")
            failing.withLock { $0 = false }
            #expect(try await bus.replayParked(of: "park.q") == 1)
            try await eventually("the replayed event to be handled") { calls.all == [7, 7] }
            #expect(broker.messageCount(of: "park.q.parked") == 0)
            group.cancelAll()
        }
        await bus.close()
        await connection.close()
    }

    @Test("competing consumers with prefetch 1 share a work queue; a broadcast subscriber's queue goes with it")
    func competingAndBroadcast() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let bus = EventBus(connection: connection)
        let first = Handled()
        let second = Handled()
        let chef1 = EventSubscription.workQueue("kitchen", prefetch: 1).on(Ordered.self) { event, _ in first.add(event.id) }
        let chef2 = EventSubscription.workQueue("kitchen", prefetch: 1).on(Ordered.self) { event, _ in second.add(event.id) }
        let live = Handled()
        let broadcast = EventSubscription.broadcast(exchange: "news").on(Ordered.self) { event, _ in live.add(event.id) }
        let running = [try await bus.start(chef1), try await bus.start(chef2)]
        let listener = try await bus.start(broadcast)
        #expect(broker.queueNames.contains(listener.queue))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for subscription in running + [listener] { group.addTask { try await subscription.run() } }
            try await bus.send((0..<10).map { Ordered(id: $0) }, toQueue: "kitchen")
            try await bus.publish(Ordered(id: 99), to: "news")
            try await eventually("every task and the broadcast") { first.all.count + second.all.count == 10 && live.all == [99] }
            group.cancelAll()
        }
        #expect(Set(first.all + second.all) == Set(0..<10))
        #expect(!first.all.isEmpty && !second.all.isEmpty, "both chefs cooked")
        await bus.close()
        await connection.close()
        #expect(!broker.queueNames.contains(listener.queue), "an exclusive queue goes with its connection")
    }

    @Test("topic routing: * is one word, # any number")
    func topicMatching() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let channel = try await connection.openChannel()
        try await channel.declareExchange("t", type: .topic)
        for (queue, pattern) in [("one", "order.*"), ("any", "order.#"), ("all", "#")] {
            try await channel.declareQueue(queue)
            try await channel.bindQueue(queue, to: "t", routingKey: pattern)
        }
        for key in ["order", "order.placed", "order.placed.eu", "user.created"] {
            try await channel.publish([1], exchange: "t", routingKey: key)
        }
        try await eventually("the routing") { broker.messageCount(of: "all") == 4 }
        #expect(broker.messageCount(of: "one") == 1)
        #expect(broker.messageCount(of: "any") == 3)
        await connection.close()
    }
}

extension InMemoryBrokerTests {
    @Test("a handler called directly in a unit test, with a context on an in-memory bus: what it publishes can be read back")
    func handlerUnitTest() async throws {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        let bus = EventBus(connection: connection)
        // The application's handler, as it would be registered with `.on(Ordered.self)`.
        let forward: @Sendable (Ordered, EventContext) async throws -> Void = { order, context in
            try await context.bus.send(Ordered(id: order.id * 10), toQueue: "next")
        }
        let context = EventContext(metadata: EventMetadata(type: Ordered.eventType, correlationID: "c-1"), queue: "orders", bus: bus)
        try await EventContext.$current.withValue(context) { try await forward(Ordered(id: 4), context) }
        let channel = try await connection.openChannel()
        let sent = try #require(try await channel.get(from: "next", noAck: true))
        #expect(try JSONEventCoder().decode(Ordered.self, from: sent.body) == Ordered(id: 40))
        #expect(sent.properties.correlationID == "c-1", "the context's correlation id travels on")
        await bus.close()
        await connection.close()
    }
}

struct Failing: Error {}
