import AMQPClient
import Foundation
import Testing

@testable import AMQPEvents

struct Parcel: AMQPEvent, Equatable {
    static let eventType = "Parcel"
    static let schemaVersion = 3
    var id: String
    var sentAt: Date
}

struct Plain: AMQPEvent {
    static let eventType = "Plain"
}

@Suite("Envelope")
struct EnvelopeTests {
    @Test("metadata to properties and back keeps every field; the envelope's headers stay out of the application's")
    func roundTrip() throws {
        let time = Date(timeIntervalSince1970: 1_800_000_000)
        let metadata = EventMetadata(
            type: "Parcel", messageID: "m-1", timestamp: time, correlationID: "c-1", causationID: "cause-1",
            schemaVersion: 3, appID: "shop", headers: ["tenant": "acme"])
        let properties = metadata.properties(contentType: "application/json")
        #expect(properties.type == "Parcel")
        #expect(properties.messageID == "m-1")
        #expect(properties.correlationID == "c-1")
        #expect(properties.appID == "shop")
        #expect(properties.contentType == "application/json")
        #expect(properties.deliveryMode == .persistent)
        #expect(properties.headers?["x-schema-version"] == .int32(3))
        #expect(properties.headers?["x-causation-id"] == "cause-1")
        let back = try #require(EventMetadata(properties))
        #expect(back == metadata)
    }

    @Test("a message without a type is no event; missing fields take their defaults; any integer is a schema version")
    func foreignMessages() throws {
        #expect(EventMetadata(AMQPProperties()) == nil)
        #expect(EventMetadata(AMQPProperties(type: "")) == nil)
        let minimal = try #require(EventMetadata(AMQPProperties(type: "Plain")))
        #expect(minimal.schemaVersion == 1)
        #expect(minimal.causationID == nil)
        #expect(minimal.headers.isEmpty)
        let fromJava = try #require(
            EventMetadata(AMQPProperties(headers: ["x-schema-version": .int64(4), "x-causation-id": .bytes(Array("c".utf8))], type: "Plain")))
        #expect(fromJava.schemaVersion == 4)
        #expect(fromJava.causationID == "c")
    }

    @Test("the JSON coder writes ISO 8601 dates and reads what it wrote; a schema version defaults to 1")
    func jsonCoder() throws {
        let coder = JSONEventCoder()
        let parcel = Parcel(id: "p", sentAt: Date(timeIntervalSince1970: 1_800_000_000))
        let body = try coder.encode(parcel)
        #expect(String(decoding: body, as: UTF8.self).contains("2027-01-15T08:00:00Z"))
        #expect(try coder.decode(Parcel.self, from: body) == parcel)
        #expect(Plain.schemaVersion == 1)
        #expect(Parcel.schemaVersion == 3)
    }
}

@Suite("Subscriptions")
struct SubscriptionTests {
    @Test("names: a service's queue, its parking lot; a broadcast has neither")
    func names() {
        let payments = EventSubscription.publishSubscribe(exchange: "orders", service: "payment")
        #expect(payments.queue == "orders.payment")
        #expect(payments.parkingLot == "orders.payment.parked")
        #expect(EventSubscription.workQueue("kitchen.tasks").queue == "kitchen.tasks")
        #expect(EventSubscription.broadcast(exchange: "orders").queue == nil)
        #expect(EventSubscription.broadcast(exchange: "orders").parkingLot == nil)
        #expect(EventTopology.queueArguments("q") == ["x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q.parked"])
    }

    @Test("handlers by type, routing keys sorted; the prefetch defaults to twice the concurrency, at least 50")
    func handlers() throws {
        let subscription = EventSubscription.workQueue("q", concurrency: 8)
            .on(Plain.self) { _, _ in }
            .on(Parcel.self) { _, _ in }
        #expect(subscription.eventTypes == ["Parcel", "Plain"])
        #expect(subscription.effectivePrefetch == 50)
        #expect(EventSubscription.workQueue("q", concurrency: 40).effectivePrefetch == 80)
        #expect(EventSubscription.workQueue("q", concurrency: 1, prefetch: 1).effectivePrefetch == 1)
        #expect(EventSubscription.defaultPrefetch(concurrency: 100_000) == UInt16.max)
        try subscription.validate()
    }

    @Test("a concurrency below 1, or a prefetch below the concurrency, is refused with a clear error")
    func invalid() {
        #expect(throws: EventError.self) { try EventSubscription.workQueue("q", concurrency: 0).validate() }
        var tooSmall = EventSubscription.workQueue("q", concurrency: 4)
        tooSmall.prefetch = 2
        let error = #expect(throws: EventError.self) { try tooSmall.validate() }
        #expect(error?.code == .invalidArgument)
    }
}

@Suite("Message ids")
struct MessageIDTests {
    @Test("message ids are version 4 UUIDs that Foundation parses, and do not repeat")
    func uuids() throws {
        let generator = MessageIDGenerator()
        var seen = Set<String>()
        for _ in 0..<10_000 {
            let id = generator.next()
            let uuid = try #require(UUID(uuidString: id))
            #expect(uuid.uuidString.lowercased() == id)
            #expect(Array(id.utf8)[14] == UInt8(ascii: "4"))
            #expect("89ab".utf8.contains(Array(id.utf8)[19]))
            seen.insert(id)
        }
        #expect(seen.count == 10_000)
        #expect(MessageIDGenerator.format(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210) == "01234567-89ab-cdef-fedc-ba9876543210")
    }
}

@Suite("Retry policies and deduplication")
struct FailurePolicyTests {
    @Test("exponential delays grow by the multiplier; jitter stays within its bounds; attempts add up")
    func retryPolicy() {
        let policy = RetryPolicy.exponential(immediateRetries: 1, first: .milliseconds(100), multiplier: 3, steps: 3, jitter: 0.2)
        #expect(policy.delays == [.milliseconds(100), .milliseconds(300), .milliseconds(900)])
        #expect(policy.maximumAttempts == 8)
        #expect(policy.delay(beforeStep: 2, random: 0) == .milliseconds(240))
        #expect(policy.delay(beforeStep: 2, random: 1) == .milliseconds(360))
        #expect(policy.maximumDelay(step: 3) == .milliseconds(1080))
        #expect(RetryPolicy.none.maximumAttempts == 1)
        #expect(RetryPolicy(immediateRetries: -3, jitter: 7).jitter == 0.9)
    }

    @Test("delayed retries need a durable queue, and positive delays")
    func invalidRetries() {
        #expect(throws: EventError.self) { try EventSubscription.broadcast(exchange: "e").retrying(.exponential(first: .seconds(1), steps: 1)).validate() }
        #expect(throws: EventError.self) { try EventSubscription.workQueue("q").retrying(RetryPolicy(delays: [.zero])).validate() }
    }

    @Test("delay queues dead-letter back to the subscription's queue; a quorum subscription's queues are quorum queues")
    func topology() {
        #expect(EventTopology.retryQueue(of: "orders.email", step: 2) == "orders.email.retry.2")
        let arguments = EventTopology.retryQueueArguments("orders.email", maximumDelay: .milliseconds(1500), type: .quorum(deliveryLimit: 5))
        #expect(arguments["x-message-ttl"] == .int64(1500))
        #expect(arguments["x-dead-letter-routing-key"] == "orders.email")
        #expect(arguments["x-queue-type"] == "quorum")
        #expect(arguments["x-delivery-limit"] == .int64(5))
    }

    @Test("the in-memory store remembers ids per subscriber, and forgets the oldest beyond its size")
    func inMemoryStore() async throws {
        let store = InMemoryDeduplicationStore(maximumCount: 3)
        for id in ["a", "b", "c"] { try await store.record(id, subscriber: "s") }
        #expect(try await store.contains("a", subscriber: "s"))
        #expect(try await !store.contains("a", subscriber: "other"))
        try await store.record("d", subscriber: "s")
        #expect(try await !store.contains("a", subscriber: "s"))
        #expect(try await store.contains("d", subscriber: "s"))
        #expect(store.count == 3)
    }

    @Test("the in-memory store forgets ids older than its age limit")
    func inMemoryAge() async throws {
        let store = InMemoryDeduplicationStore(maximumAge: .zero)
        try await store.record("a", subscriber: "s")
        #expect(try await !store.contains("a", subscriber: "s"))
    }
}
