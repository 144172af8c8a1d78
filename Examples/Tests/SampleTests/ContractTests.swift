import AMQPEvents
import AMQPEventsTesting
@testable import Bookstore
@testable import FoodDelivery
@testable import OrderEvents
import SampleSupport
import Testing

/// The samples' AsyncAPI documents keep AsyncAPI 3.0's rules, and what the samples publish
/// conforms to the schemas in them.
@Suite("Samples: their event contracts")
struct ContractTests {
    static let documents: [(String, @Sendable () throws -> AsyncAPIDocument)] = [
        ("order-events", { try OrderService.contract() }),
        ("food-delivery", { try FoodServices.contract() }),
        ("bookstore", { try Bookstore().contract() }),
    ]

    @Test("each sample system's AsyncAPI document keeps the AsyncAPI 3.0 rules", arguments: 0..<3)
    func rules(_ index: Int) throws {
        let (name, make) = Self.documents[index]
        let document = try make().json
        let problems = AsyncAPIRules.problems(of: document)
        let (channels, operations, messages) = (
            document["channels"]?.objectValue?.count ?? 0, document["operations"]?.objectValue?.count ?? 0,
            document["components"]?["messages"]?.objectValue?.count ?? 0
        )
        print("\(name) asyncapi: \(channels) channels, \(operations) operations, \(messages) messages, problems \(problems)")
        #expect(problems == [])
        #expect(channels > 0 && operations > 0 && messages > 0)
    }

    @Test("the rules catch a broken document: a dangling reference, another channel's message, a bad AMQP binding")
    func rulesCatchBreakage() throws {
        guard case .object(var document) = try OrderService.contract().json,
            case .object(var operations) = document["operations"],
            case .object(var publish) = operations["order-service_publish_OrderPlaced"],
            case .object(var channels) = document["channels"],
            case .object(var payment) = channels["orders_payment"]
        else {
            Issue.record("the document is not shaped as expected")
            return
        }
        publish["messages"] = [["$ref": "#/channels/orders_payment/messages/OrderPlaced"]]
        publish["channel"] = ["$ref": "#/channels/nowhere"]
        operations["order-service_publish_OrderPlaced"] = .object(publish)
        payment["bindings"] = ["amqp": ["is": "stream", "bindingVersion": "0.3.0"]]
        channels["orders_payment"] = .object(payment)
        document["operations"] = .object(operations)
        document["channels"] = .object(channels)
        let problems = AsyncAPIRules.problems(of: .object(document))
        #expect(problems.contains("$ref #/channels/nowhere resolves to nothing"))
        #expect(problems.contains { $0.contains("is not its channel's") })
        #expect(problems.contains { $0.contains("must be queue or routingKey") })
    }

    @Test("the document shows both versions of OrderPlaced, and the services read both")
    func versions() throws {
        let document = try OrderService.contract().json
        let v1 = try #require(AsyncAPIRules.payloadSchema(of: "OrderPlaced", version: 1, in: document))
        let v2 = try #require(AsyncAPIRules.payloadSchema(of: "OrderPlaced", version: 2, in: document))
        #expect(v1["required"] == ["orderId", "userId", "amount"])
        #expect(v2["required"] == ["orderId", "userId", "amount", "currency"])
        let receive = try #require(document["operations"]?["payment-service_receive"]?["messages"]?.arrayValue)
        #expect(receive.count == 2)
    }

    @Test("every event the food-delivery system publishes conforms to its schema in the document; a corrupted one does not")
    func publishedEventsConform() async throws {
        let document = try FoodServices.contract().json
        try await EventTestHarness.withHarness { harness in
            var services = FoodServices(tally: Tally())
            services.cookTime = .zero
            let handlers = services
            try await harness.run({ _, parts in
                for subscription in [
                    handlers.notification, handlers.kitchenOrders, handlers.kitchenBoard(KitchenBoard()), handlers.delivery,
                    handlers.chef("Remy"), handlers.status,
                ] {
                    parts.subscribe(subscription)
                }
                parts.respond(to: Kitchen.dispatcher, with: FindDriver.self) { request, _ in handlers.dispatch(request) }
            }) {
                try await harness.bus.publish(sampleOrder("o-1", customer: 0), to: Kitchen.exchange)
                try await harness.waitUntil("the order is out for delivery") { harness.published.contains { $0.type == "OrderOutForDelivery" } }
            }
            var checked: [String] = []
            for published in harness.published {
                let schema = try #require(
                    AsyncAPIRules.payloadSchema(of: published.type, version: published.metadata.schemaVersion, in: document),
                    "\(published.type) is in the document")
                let body = try JSONValue(parsing: published.body)
                #expect(EventSchema.problems(of: body, against: schema) == [], "\(published.type)")
                checked.append(published.type)
                // The same event with its first required property gone, and a string where a number was.
                guard case .object(var corrupted) = body, let first = schema["required"]?.arrayValue?.first?.stringValue else { continue }
                corrupted.removeValue(forKey: first)
                #expect(!EventSchema.problems(of: .object(corrupted), against: schema).isEmpty, "\(published.type) without \(first)")
            }
            print("food-delivery: \(checked.count) published events checked against their schemas: \(Set(checked).sorted())")
            #expect(Set(checked) == ["FoodOrderPlaced", "PrepareItem", "ItemPrepared", "OrderReady", "FindDriver", "OrderOutForDelivery"])
        }
    }
}

extension ContractTests {
    @Test("the orders order-events publishes, in v1 and v2 and in every envelope, conform to their schemas")
    func orderEventsConform() async throws {
        let document = try OrderService.contract().json
        try await EventTestHarness.withHarness { harness in
            let tally = Tally()
            try await harness.run(OrderService.allCases.map { $0.subscription(tally: tally) }) {
                for envelope in EventEnvelope.allCases {
                    try await harness.bus.publish(
                        OrderPlaced(orderId: "v2-\(envelope)", userId: "u", amount: 1, currency: "EUR"), to: OrderService.exchange,
                        envelope: envelope)
                    try await harness.bus.publish(
                        OrderPlacedV1(orderId: "v1-\(envelope)", userId: "u", amount: 1), to: OrderService.exchange, envelope: envelope)
                }
                try await harness.waitUntilHandled(3 * 2 * EventEnvelope.allCases.count)
            }
            #expect(harness.handled.allSatisfy { $0.outcome == .succeeded })
            #expect(tally.counts == ["payment": 6, "inventory": 6, "notification": 6], "every service read every version in every envelope")
            for published in harness.published {
                let schema = try #require(AsyncAPIRules.payloadSchema(of: published.type, version: published.metadata.schemaVersion, in: document))
                #expect(EventSchema.problems(of: try JSONValue(parsing: published.body), against: schema) == [])
                #expect(!EventSchema.problems(of: ["orderId": 7], against: schema).isEmpty)
            }
        }
    }
}
