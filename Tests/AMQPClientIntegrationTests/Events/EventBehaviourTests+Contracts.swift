import AMQPClient
import AMQPEvents
import Foundation
import Testing

/// Version 2 of a price: in cents, with its currency.
struct PriceSet: AMQPEvent, Equatable {
    static let eventType = "test.PriceSet"
    static let schemaVersion = 2
    var sku: String
    var cents: Int
    var currency: String
}

/// Version 1: in whole euros.
struct PriceSetV1: AMQPEvent {
    static let eventType = "test.PriceSet"
    var sku: String
    var euros: Int
}

/// Version 3, which the test's consumer does not read yet.
struct PriceSetV3: AMQPEvent {
    static let eventType = "test.PriceSet"
    static let schemaVersion = 3
    var sku: String
    var amount: String
}

/// Envelopes and schema versions, on both transports.
extension EventBehaviourTests {
    @Test(
        "an event in each envelope reaches its handler with the same payload and envelope fields",
        arguments: Transport.allCases, EventEnvelope.allCases)
    func envelopes(_ transport: Transport, _ envelope: EventEnvelope) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).enveloped"
            queues.withLock { $0.append(queue) }
            let seen = Calls()
            let subscription = EventSubscription.workQueue(queue).on(Charged.self) { event, context in
                let metadata = context.metadata
                seen.add(
                    "\(event.orderId) \(event.amount) \(metadata.envelope.rawValue) v\(metadata.schemaVersion) "
                        + "correlation=\(metadata.correlationID ?? "-") type=\(metadata.type)")
            }
            try await running(bus, [subscription]) {
                try await bus.send(Charged(orderId: "e", amount: 7), toQueue: queue, correlationID: "c-1", envelope: envelope)
                try await seen.wait(for: 1, "the event in \(envelope)")
            }
            #expect(seen.all == ["e 7 \(envelope.rawValue) v1 correlation=c-1 type=\(Charged.eventType)"])
        }
    }

    @Test("CloudEvents another producer publishes, binary and structured, reach our handlers", arguments: Transport.allCases)
    func foreignCloudEvents(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).foreign"
            queues.withLock { $0.append(queue) }
            let seen = Calls()
            let subscription = EventSubscription.workQueue(queue).on(Charged.self) { event, context in
                seen.add("\(event.orderId) \(context.metadata.envelope.rawValue) source=\(context.metadata.source ?? "-") id=\(context.metadata.messageID)")
            }
            try await bus.declare(subscription)
            // As the CloudEvents SDK's RabbitMQ binding writes them: string headers, no AMQP type property.
            let channel = try await bus.connection.openChannel()
            try await channel.publish(
                Array(#"{"orderId":"b","amount":1}"#.utf8), routingKey: queue,
                properties: AMQPProperties(
                    contentType: "application/json",
                    headers: [
                        "ce-specversion": .string("1.0"), "ce-id": .string("py-b"), "ce-type": .string(Charged.eventType),
                        "ce-source": .string("/python/producer"), "ce-time": .string("2026-12-06T10:00:00Z"),
                    ]))
            try await channel.publish(
                Array(
                    #"{"specversion":"1.0","id":"py-s","type":"\#(Charged.eventType)","source":"/python/producer","datacontenttype":"application/json","data":{"orderId":"s","amount":2}}"#
                        .utf8), routingKey: queue, properties: AMQPProperties(contentType: "application/cloudevents+json"))
            await channel.close()
            try await running(bus, [subscription]) { try await seen.wait(for: 2, "both CloudEvents") }
            #expect(
                seen.all == [
                    "b cloudevents-binary source=/python/producer id=py-b", "s cloudevents-structured source=/python/producer id=py-s",
                ])
        }
    }

    @Test("a v2 handler reads v1 (upcast) and v2 events, and parks v3 with why", arguments: Transport.allCases)
    func schemaVersions(_ transport: Transport) async throws {
        try await transport.withBus { bus, domain, queues, _ in
            let queue = "\(domain).prices"
            queues.withLock { $0.append(queue) }
            let seen = Calls()
            let subscription = EventSubscription.workQueue(queue).retrying(.none)
                .on(PriceSet.self) { price, context in
                    seen.add("\(price.sku) \(price.cents) \(price.currency) (sent as v\(context.metadata.schemaVersion))")
                }
                .upcasting(PriceSetV1.self, version: 1, to: PriceSet.self) { old in
                    PriceSet(sku: old.sku, cents: old.euros * 100, currency: "EUR")
                }
            try await running(bus, [subscription]) {
                try await bus.send(PriceSetV1(sku: "a", euros: 3), toQueue: queue)
                try await bus.send(PriceSet(sku: "b", cents: 250, currency: "USD"), toQueue: queue)
                try await bus.send(PriceSetV3(sku: "c", amount: "1.00 EUR"), toQueue: queue)
                let parked = try await waitForParked(bus, of: queue)
                #expect(parked.map(\.reason) == ["unsupportedSchemaVersion"])
                #expect(parked.first?.schemaVersion == 3)
                #expect(parked.first?.error?.contains("v3 is newer than this service reads (v2)") == true)
            }
            #expect(seen.all == ["a 300 EUR (sent as v1)", "b 250 USD (sent as v2)"])
        }
    }

    @Test("an upcast registered before its handler, or from a version that is not older, is refused")
    func upcastMisuse() async throws {
        try await Transport.inMemory.withBus { bus, domain, _, _ in
            let early = EventSubscription.workQueue("\(domain).early")
                .upcasting(PriceSetV1.self, version: 1, to: PriceSet.self) { PriceSet(sku: $0.sku, cents: 0, currency: "") }
                .on(PriceSet.self) { _, _ in }
            let error = await #expect(throws: EventError.self) { try await bus.start(early) }
            #expect(error?.code == .invalidArgument)
            let notOlder = EventSubscription.workQueue("\(domain).same").on(PriceSet.self) { _, _ in }
                .upcasting(PriceSetV1.self, version: 2, to: PriceSet.self) { PriceSet(sku: $0.sku, cents: 0, currency: "") }
            await #expect(throws: EventError.self) { try await bus.start(notOlder) }
        }
    }
}
