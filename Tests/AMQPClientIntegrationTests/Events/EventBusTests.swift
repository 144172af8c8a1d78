import AMQPClient
import AMQPEvents
import Foundation
import ServiceLifecycle
import Synchronization
import Testing

@Suite("Events: publish/subscribe, work queues, parking lot")
struct EventBusTests {
    @Test("the envelope travels whole: type, message id, timestamp, correlation and causation ids, schema version, app id, headers")
    func envelopeRoundTrip() async throws {
        try await withEventBus { bus, domain, queues in
            let audit = EventSubscription.publishSubscribe(exchange: domain, service: "audit")
            queues.withLock { $0.append(audit.queue!) }
            let stream = try await bus.events(Shipped.self, from: audit.kind)
            let sent = try await bus.publish(
                Shipped(orderId: "o-1", carrier: "ups"), to: domain, correlationID: "checkout-9", messageID: "m-42",
                headers: ["tenant": "acme"])
            var iterator = stream.makeAsyncIterator()
            let received = try #require(try await iterator.next())
            #expect(received.event == Shipped(orderId: "o-1", carrier: "ups"))
            let metadata = received.metadata
            #expect(metadata.type == "test.Shipped")
            #expect(metadata.messageID == "m-42")
            #expect(metadata.correlationID == "checkout-9")
            #expect(metadata.causationID == nil)
            #expect(metadata.schemaVersion == 2)
            #expect(metadata.appID == "event-tests")
            #expect(metadata.headers == ["tenant": "acme"])
            #expect(metadata.timestamp.map { abs($0.timeIntervalSinceNow) < 60 } == true)
            #expect(metadata == sent.withTimestamp(metadata.timestamp))
            try await received.ack()
            await stream.close()
        }
    }

    @Test("a message another client published with the same properties is an event")
    func foreignMessageIsAnEvent() async throws {
        try await withEventBus { bus, domain, queues in
            let subscription = EventSubscription.publishSubscribe(exchange: domain, service: "billing")
            queues.withLock { $0.append(subscription.queue!) }
            let stream = try await bus.events(Charged.self, from: subscription.kind)
            try await withTestConnection { raw in
                let channel = try await raw.openChannel()
                let properties = AMQPProperties(
                    contentType: "application/json", headers: ["x-schema-version": 1, "x-causation-id": "c-1"],
                    deliveryMode: .persistent, correlationID: "corr-1", messageID: "py-1", timestamp: Date(),
                    type: "test.Charged", appID: "python-service")
                try await channel.publish(#"{"orderId":"o-7","amount":25}"#, exchange: domain, routingKey: "test.Charged", properties: properties)
            }
            var iterator = stream.makeAsyncIterator()
            let received = try #require(try await iterator.next())
            #expect(received.event == Charged(orderId: "o-7", amount: 25))
            #expect(received.metadata.messageID == "py-1")
            #expect(received.metadata.causationID == "c-1")
            #expect(received.metadata.correlationID == "corr-1")
            #expect(received.metadata.appID == "python-service")
            try await received.ack()
            await stream.close()
        }
    }

    @Test("fan-out: three services each get every event; one stopped while events are published catches up")
    func fanOutWithCatchUp() async throws {
        let total = 60
        try await withEventBus { bus, domain, queues in
            let seen = ["payment", "inventory", "notification"].map { ($0, Seen()) }
            let subscriptions = seen.map { service, seen in
                EventSubscription.publishSubscribe(exchange: domain, service: service)
                    .on(Charged.self) { charge, _ in seen.add(charge.orderId) }
            }
            queues.withLock { $0.append(contentsOf: subscriptions.compactMap(\.queue)) }
            for subscription in subscriptions { try await bus.declare(subscription) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Notification is down for the first half.
                for subscription in subscriptions.dropLast() { group.addTask { try await bus.run(subscription) } }
                try await bus.publish((0..<total / 2).map { Charged(orderId: "o-\($0)", amount: $0) }, to: domain)
                group.addTask { try await bus.run(subscriptions.last!) }
                try await bus.publish((total / 2..<total).map { Charged(orderId: "o-\($0)", amount: $0) }, to: domain)
                for (service, seen) in seen { try await seen.wait(for: total, "\(service) to handle \(total)") }
                group.cancelAll()
            }
            for (service, seen) in seen {
                print("fan-out \(service): published \(total), received \(seen.distinct), lost \(total - seen.distinct), duplicated \(seen.duplicates)")
                #expect(seen.distinct == total)
                #expect(seen.duplicates == 0)
            }
            // Concurrency 1 keeps the queue's order.
            #expect(seen[0].1.order == (0..<total).map { "o-\($0)" })
        }
    }

    @Test("a work queue: K chefs share T tasks, each cooked exactly once, each chef cooking some")
    func competingConsumers() async throws {
        let (chefs, tasks) = (3, 90)
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).tasks"
            queues.withLock { $0.append(queue) }
            let cooked = Seen()
            let byChef = (0..<chefs).map { _ in Seen() }
            let subscriptions = (0..<chefs).map { index in
                EventSubscription.workQueue(queue).on(Charged.self) { task, _ in
                    try await Task.sleep(for: .milliseconds(2))  // the work, so that chefs overlap
                    cooked.add(task.orderId)
                    byChef[index].add(task.orderId)
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for subscription in subscriptions {
                    let running = try await bus.start(subscription)
                    group.addTask { try await running.run() }
                }
                try await bus.send((0..<tasks).map { Charged(orderId: "t-\($0)", amount: $0) }, toQueue: queue)
                try await cooked.wait(for: tasks, within: 30, "every task cooked")
                group.cancelAll()
            }
            let perChef = byChef.map(\.distinct)
            print("work queue: sent \(tasks), cooked \(cooked.distinct), duplicated \(cooked.duplicates), per chef \(perChef)")
            #expect(cooked.distinct == tasks)
            #expect(cooked.duplicates == 0)
            #expect(perChef.allSatisfy { $0 > 0 })
            #expect(perChef.reduce(0, +) == tasks)
        }
    }

    @Test("an undecodable body and an unknown type are parked at once with their reason; a handler's error after its retries")
    func poisonIsParked() async throws {
        try await withEventBus { bus, domain, queues in
            let subscription = EventSubscription.publishSubscribe(exchange: domain, service: "strict")
                .on(Charged.self) { charge, _ in
                    if charge.amount < 0 { throw ValidationFailed() }
                }
            let queue = try #require(subscription.queue)
            queues.withLock { $0.append(queue) }
            try await bus.declare(subscription)
            try await withTestConnection { raw in
                let channel = try await raw.openChannel()
                // Straight into the service's queue: not JSON, and a type it does not handle.
                try await channel.publish("not json", routingKey: queue, properties: AMQPProperties(messageID: "bad-body", type: "test.Charged"))
                try await channel.publish("{}", routingKey: queue, properties: AMQPProperties(messageID: "bad-type", type: "test.Unknown"))
            }
            try await bus.publish(Charged(orderId: "neg", amount: -1), to: domain, messageID: "throws")
            try await bus.publish(Charged(orderId: "ok", amount: 1), to: domain, messageID: "fine")

            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run(subscription) }
                try await withTestConnection { admin in
                    let channel = try await admin.openChannel()
                    let parkingLot = EventTopology.parkingLot(of: queue)
                    try await channel.waitForQueue(parkingLot, within: 10, "three parked messages") { $0.messageCount == 3 }
                    var parked: [String: AMQPDelivery] = [:]
                    for _ in 0..<3 {
                        let message = try await channel.waitForMessage(from: parkingLot)
                        parked[message.properties.messageID ?? ""] = message
                    }
                    #expect(Set(parked.keys) == ["bad-body", "bad-type", "throws"])
                    let badBody = try #require(parked["bad-body"]?.properties.headers)
                    #expect(badBody["x-parked-reason"] == "decodingFailed")
                    #expect(badBody["x-parked-from-queue"] == .string(queue))
                    #expect(badBody["x-original-routing-key"] == .string(queue))
                    #expect(badBody["x-parked-at"] != nil)
                    #expect(parked["bad-body"]?.bodyString == "not json")
                    let badType = try #require(parked["bad-type"]?.properties.headers)
                    #expect(badType["x-parked-reason"] == "unknownEventType")
                    guard case .string(let why) = badType["x-parked-error"] else {
                        Issue.record("no x-parked-error")
                        return
                    }
                    #expect(why.contains("test.Unknown"))
                    // Poison is parked at once; the handler's failure after its immediate retries.
                    #expect(badBody["x-attempts"] == nil)
                    #expect(parked["throws"]?.properties.headers?["x-parked-reason"] == "retriesExhausted")
                    #expect(parked["throws"]?.properties.headers?["x-attempts"] == .int64(3))
                    let main = try await channel.declareQueue(queue, passive: true)
                    #expect(main.messageCount == 0)
                }
                group.cancelAll()
            }
        }
    }

    struct ValidationFailed: Error {}

    @Test("inside a handler, published events carry the handled event's correlation id and, as causation, its message id")
    func causation() async throws {
        try await withEventBus { bus, domain, queues in
            let shipping = EventSubscription.publishSubscribe(exchange: domain, service: "shipping")
                .on(Charged.self) { charge, context in
                    try await context.bus.publish(Shipped(orderId: charge.orderId, carrier: "dhl"), to: domain)
                }
            let audit = EventSubscription.publishSubscribe(exchange: domain, service: "audit")
            queues.withLock { $0.append(contentsOf: [shipping.queue!, audit.queue!]) }
            let shipped = try await bus.events(Shipped.self, from: audit.kind)
            try await bus.declare(shipping)
            let charged = try await bus.publish(Charged(orderId: "o-1", amount: 5), to: domain, correlationID: "checkout-1")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await bus.run(shipping) }
                var iterator = shipped.makeAsyncIterator()
                let received = try #require(try await iterator.next())
                #expect(received.metadata.causationID == charged.messageID)
                #expect(received.metadata.correlationID == "checkout-1")
                #expect(received.metadata.messageID != charged.messageID)
                try await received.ack()
                group.cancelAll()
            }
            await shipped.close()
        }
    }

    @Test("publishing fails clearly when no queue takes the event; bad arguments are refused")
    func unroutableAndInvalid() async throws {
        try await withEventBus { bus, domain, _ in
            let error = await #expect(throws: EventError.self) {
                try await bus.publish(Charged(orderId: "nobody", amount: 1), to: domain)
            }
            #expect(error?.code == .publishFailed)
            #expect(error?.underlying?.code == .messageReturned)
            let invalid = await #expect(throws: EventError.self) {
                try await bus.run(EventSubscription.workQueue("\(domain).none", concurrency: 0))
            }
            #expect(invalid?.code == .invalidArgument)
        }
    }

    @Test("a graceful shutdown stops taking events, finishes those in flight and settles them: nothing lost, nothing twice")
    func gracefulShutdown() async throws {
        let total = 40
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).slow"
            queues.withLock { $0.append(queue) }
            let started = Seen()
            let finished = Seen()
            let subscription = EventSubscription.workQueue(queue, concurrency: 4).on(Charged.self) { task, _ in
                started.add(task.orderId)
                try? await Task.sleep(for: .milliseconds(100))  // in flight when the shutdown begins
                finished.add(task.orderId)
            }
            try await bus.send((0..<total).map { Charged(orderId: "s-\($0)", amount: $0) }, toQueue: queue)
            let trigger = ShutdownTrigger(started: started)
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: bus.service(for: subscription)), .init(service: trigger, successTerminationBehavior: .ignore)],
                    logger: .init(label: "test")))
            trigger.group.withLock { $0 = group }
            try await withTimeout(20, "the graceful shutdown") { try await group.run() }
            let inQueue = try await withTestConnection { admin in
                try await admin.openChannel().waitForQueue(queue, within: 5, "the queue to take back what was not handled") {
                    $0.messageCount + UInt32(finished.distinct) >= UInt32(total)
                }.messageCount
            }
            print("graceful shutdown: sent \(total), started \(started.distinct), finished \(finished.distinct), back in queue \(inQueue), duplicated \(finished.duplicates)")
            #expect(started.distinct == finished.distinct)  // every handler that started, finished
            #expect(finished.distinct + Int(inQueue) == total)  // nothing lost
            #expect(finished.duplicates == 0)
            #expect(finished.distinct < total)  // it stopped taking new ones
        }
    }

    @Test("publishing across a connection cut: every publish returns, nothing is lost, duplicates carry the same message id")
    func publishAcrossCut() async throws {
        let total = 300
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast())
        defer { proxy.stop() }
        try await withEventBus(connection: connection) { bus, domain, queues in
            let queue = "\(domain).cut"
            queues.withLock { $0.append(queue) }
            var ids: [String] = []
            for index in 0..<total {
                if index == total / 3 { proxy.cutAll() }
                let sent = try await bus.send(Charged(orderId: "c-\(index)", amount: index), toQueue: queue)
                ids.append(sent.messageID)
            }
            let received = try await withTestConnection { admin in
                let channel = try await admin.openChannel()
                try await channel.waitForQueue(queue, within: 10, "every event in the queue") { $0.messageCount >= UInt32(total) }
                var received: [String: Int] = [:]
                while let message = try await channel.get(from: queue, noAck: true) {
                    received[message.properties.messageID ?? "", default: 0] += 1
                }
                return received
            }
            let lost = Set(ids).subtracting(received.keys).count
            let duplicated = received.values.reduce(0) { $0 + $1 - 1 }
            print("publish across a cut: published \(total), confirmed \(ids.count), received \(received.count) distinct, lost \(lost), duplicated \(duplicated)")
            #expect(ids.count == total)
            #expect(lost == 0)
        }
    }
}

extension EventMetadata {
    func withTimestamp(_ timestamp: Date?) -> EventMetadata {
        var copy = self
        copy.timestamp = timestamp
        return copy
    }
}

/// Begins the group's graceful shutdown once 4 handlers are in flight.
final class ShutdownTrigger: Service, Sendable {
    let started: Seen
    let group = Mutex<ServiceGroup?>(nil)

    init(started: Seen) { self.started = started }

    func run() async throws {
        try await started.wait(for: 4, "handlers in flight")
        await group.withLock { $0 }?.triggerGracefulShutdown()
        try await gracefulShutdown()
    }
}
