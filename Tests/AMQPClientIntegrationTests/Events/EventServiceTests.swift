import AMQPClient
import AMQPEvents
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@Suite("Events: one Service for an application")
struct EventServiceTests {
    @Test("EventService: a graceful shutdown finishes the handlers in flight, then closes; its responder answers meanwhile; nothing lost")
    func gracefulShutdown() async throws {
        let total = 40
        try await withEventBus { publisher, domain, queues in
            let queue = "\(domain).service"
            let requests = "\(domain).service.echo"
            queues.withLock { $0.append(contentsOf: [queue, requests]) }
            let started = Seen()
            let finished = Seen()
            let service = EventService(configuration: .init(connection: try TestBroker.configuration)) { _, parts in
                parts.subscribe(
                    EventSubscription.workQueue(queue, concurrency: 4).on(Charged.self) { task, _ in
                        started.add(task.orderId)
                        try? await Task.sleep(for: .milliseconds(100))  // in flight when the shutdown begins
                        finished.add(task.orderId)
                    })
                parts.respond(to: requests, with: Echo.self) { request, _ in Echoed(text: request.text.uppercased()) }
            }
            try await publisher.declareResponder(queue: requests)
            try await publisher.send((0..<total).map { Charged(orderId: "e-\($0)", amount: $0) }, toQueue: queue)
            let trigger = RequestThenShutdown(started: started, publisher: publisher, requests: requests)
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: service), .init(service: trigger, successTerminationBehavior: .ignore)],
                    logger: .init(label: "test")))
            trigger.group.withLock { $0 = group }
            try await withTimeout(20, "the graceful shutdown") { try await group.run() }
            let inQueue = try await withTestConnection { admin in
                try await admin.openChannel().waitForQueue(queue, within: 5, "the queue to take back what was not handled") {
                    $0.messageCount + UInt32(finished.distinct) >= UInt32(total)
                }.messageCount
            }
            print(
                "event service shutdown: sent \(total), started \(started.distinct), finished \(finished.distinct), back in queue \(inQueue), duplicated \(finished.duplicates), reply \(trigger.reply.withLock { $0 } ?? "none")"
            )
            #expect(trigger.reply.withLock { $0 } == "PING")
            #expect(started.distinct == finished.distinct)  // every handler that started, finished
            #expect(finished.distinct + Int(inQueue) == total)  // nothing lost
            #expect(finished.duplicates == 0)
        }
    }

    @Test("a ServiceGroup that lists the connection after its subscription and responder shuts down without an error")
    func connectionListedLast() async throws {
        try await withEventBus { publisher, domain, queues in
            let queue = "\(domain).order"
            let requests = "\(domain).order.echo"
            queues.withLock { $0.append(contentsOf: [queue, requests]) }
            let connection = try await TestBroker.connect()
            let bus = EventBus(connection: connection)
            let started = Seen()
            let subscription = EventSubscription.workQueue(queue).on(Charged.self) { task, _ in started.add(task.orderId) }
            try await publisher.send(Charged(orderId: "o-1", amount: 1), toQueue: queue)
            let trigger = RequestThenShutdown(started: started, publisher: nil, requests: requests, handlersBeforeShutdown: 1)
            // Stopped in reverse: the trigger, then the connection, then the responder and subscription.
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [
                        .init(service: bus.service(for: subscription)),
                        .init(service: bus.responder(to: requests, with: Echo.self) { request, _ in Echoed(text: request.text) }),
                        .init(service: connection),
                        .init(service: trigger, successTerminationBehavior: .ignore),
                    ],
                    logger: .init(label: "test")))
            trigger.group.withLock { $0 = group }
            try await withTimeout(20, "the graceful shutdown") { try await group.run() }
            #expect(started.distinct == 1)
            #expect(!connection.isOpen)
        }
    }
}

/// Once `handlersBeforeShutdown` handlers are in flight, makes one request (when it has a
/// publisher) and begins the group's graceful shutdown.
final class RequestThenShutdown: Service, Sendable {
    let started: Seen
    let publisher: EventBus?
    let requests: String
    let handlersBeforeShutdown: Int
    let group = Mutex<ServiceGroup?>(nil)
    let reply = Mutex<String?>(nil)

    init(started: Seen, publisher: EventBus?, requests: String, handlersBeforeShutdown: Int = 4) {
        self.started = started
        self.publisher = publisher
        self.requests = requests
        self.handlersBeforeShutdown = handlersBeforeShutdown
    }

    func run() async throws {
        try await started.wait(for: handlersBeforeShutdown, "handlers in flight")
        if let publisher {
            let answer = try await publisher.request(Echo(text: "ping"), to: requests)
            reply.withLock { $0 = answer.text }
        }
        await group.withLock { $0 }?.triggerGracefulShutdown()
        try await gracefulShutdown()
    }
}

@Suite("Events: one dialect with the client")
struct EventDialectTests {
    @Test("an EventStream that is dropped closes its channel: its consumer goes, its unacknowledged event goes back")
    func droppedStreamReleasesChannel() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).stream"
            queues.withLock { $0.append(queue) }
            try await bus.send(Charged(orderId: "d-1", amount: 1), toQueue: queue)
            do {
                let stream = try await bus.events(Charged.self, from: .workQueue(queue: queue))
                var iterator = stream.makeAsyncIterator()
                let first = try await iterator.next()
                #expect(first?.event.orderId == "d-1")  // taken, never acknowledged
                try await withTestConnection { admin in
                    _ = try await admin.openChannel().waitForQueue(queue, "the stream's consumer") { $0.consumerCount == 1 }
                }
            }
            // Both the stream and its iterator are gone here.
            let info = try await withTestConnection { admin in
                try await admin.openChannel().waitForQueue(queue, "the consumer to go and the event to come back") {
                    $0.consumerCount == 0 && $0.messageCount == 1
                }
            }
            #expect(info.messageCount == 1)
        }
    }

    @Test("rejecting a received event says where it goes: back to its queue, or to the parking lot")
    func rejectIsExplicit() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).reject"
            queues.withLock { $0.append(queue) }
            try await bus.send(Charged(orderId: "r-1", amount: 1), toQueue: queue)
            let stream = try await bus.events(Charged.self, from: .workQueue(queue: queue))
            var iterator = stream.makeAsyncIterator()
            try await iterator.next()?.reject(requeue: true)
            let again = try await iterator.next()
            #expect(again?.context.redelivered == true)
            try await again?.reject(requeue: false)
            let parked = try await withTestConnection { admin in
                try await admin.openChannel().waitForQueue(EventTopology.parkingLot(of: queue), "the parked event") { $0.messageCount == 1 }
            }
            #expect(parked.messageCount == 1)
            await stream.close()
        }
    }

    @Test("EventError is Equatable, its codes compare as AMQPError's do")
    func equatableErrors() {
        let a = EventError(code: .timedOut, message: "no reply")
        #expect(a == EventError(code: .timedOut, message: "no reply"))
        #expect(a != EventError(code: .closed, message: "no reply"))
    }
}

@Suite("Events: tools for operators and tests")
struct EventOperatorToolsTests {
    @Test("parked messages show their type, reason and what the event was; purge empties the lot")
    func parkedListing() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).parked"
            queues.withLock { $0.append(queue) }
            let subscription = EventSubscription.workQueue(queue).retrying(.none).on(Charged.self) { _, _ in
                throw DoNotRetry(Declined(text: "card declined\u{1B}[31m"))
            }
            let running = try await bus.start(subscription)
            let task = Task { try await running.run() }
            defer { task.cancel() }
            try await bus.send(Charged(orderId: "p-1", amount: 42), toQueue: queue)
            let parked = try await waitForParked(bus, of: queue)
            let line = parked[0].description
            print("parked: \(line)")
            #expect(line.contains("type=test.Charged"))
            #expect(line.contains("reason=nonRetryable"))
            #expect(line.contains("\"orderId\":\"p-1\""))
            #expect(!line.contains("\u{1B}"), "escaped for a terminal")
            #expect(parked[0].summary().contains("42"))
            #expect(try await bus.purgeParked(of: queue) == 1)
            #expect(try await bus.parkedMessages(of: queue).isEmpty)
        }
    }

    @Test("deleteTopology removes a subscription's queue, parking lot and delay queues; running it again declares them anew")
    func deleteTopology() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).reset"
            queues.withLock { $0.append(queue) }
            let subscription = EventSubscription.publishSubscribe(exchange: domain, service: "reset")
                .retrying(.exponential(first: .seconds(1), steps: 2)).on(Charged.self) { _, _ in }
            try await bus.declare(subscription)
            let names = [subscription.queue!, subscription.parkingLot!] + (1...2).map { EventTopology.retryQueue(of: subscription.queue!, step: $0) }
            try await withTestConnection { admin in
                for name in names { _ = try await admin.openChannel().declareQueue(name, passive: true) }
            }
            try await bus.deleteTopology(for: subscription)
            try await withTestConnection { admin in
                for name in names {
                    let error = await #expect(throws: AMQPError.self) { _ = try await admin.openChannel().declareQueue(name, passive: true) }
                    #expect(error?.replyCode == 404, "\(name) is gone")
                }
            }
            try await bus.declare(subscription)  // declared anew, not taken as declared already
            try await withTestConnection { admin in
                _ = try await admin.openChannel().declareQueue(subscription.queue!, passive: true)
            }
            try await bus.deleteTopology(for: subscription)
        }
    }
}

struct Declined: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

extension EventOperatorToolsTests {
    /// Runs `amqp-events` to its end; returns its exit status and standard output.
    static func tool(_ arguments: String...) async throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = try SampleTests.executable("amqp-events")
        process.arguments = arguments + ["--url", TestBroker.url]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let lines = LineReader(output.fileHandleForReading)
        let text = try await withTimeout(20, "amqp-events \(arguments.joined(separator: " "))") {
            var text = ""
            while let line = try await lines.nextLine() { text += line + "\n" }
            return text
        }
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    @Test("amqp-events lists, shows, replays and purges any queue's parked messages")
    func commandLineTool() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).tool"
            queues.withLock { $0.append(queue) }
            let parkedEvent = try await bus.send(Charged(orderId: "t-1", amount: 7), toQueue: queue)
            _ = try await bus.send(Charged(orderId: "t-2", amount: 8), toQueue: queue)
            // Park both: a stream that rejects them to the parking lot.
            let stream = try await bus.events(Charged.self, from: .workQueue(queue: queue))
            var iterator = stream.makeAsyncIterator()
            for _ in 0..<2 { try await iterator.next()?.reject(requeue: false) }
            await stream.close()
            try await withTestConnection { admin in
                _ = try await admin.openChannel().waitForQueue(EventTopology.parkingLot(of: queue), "both parked") { $0.messageCount == 2 }
            }

            let list = try await Self.tool("parked", "list", queue)
            print(list.output)
            #expect(list.status == 0)
            #expect(list.output.contains("type=test.Charged"))
            #expect(list.output.contains("\"orderId\":\"t-1\""))
            #expect(list.output.contains("2 parked in \(EventTopology.parkingLot(of: queue))"))

            let show = try await Self.tool("parked", "show", queue, parkedEvent.messageID)
            #expect(show.status == 0)
            #expect(show.output.contains("content type: application/json"))

            let replay = try await Self.tool("parked", "replay", queue, "--id", parkedEvent.messageID)
            #expect(replay.output.contains("moved 1 back"))
            #expect(try await bus.parkedMessages(of: queue).count == 1)

            let refused = try await Self.tool("parked", "purge", queue)
            #expect(refused.status != 0, "purging asks for --yes")
            let purged = try await Self.tool("parked", "purge", queue, "--yes")
            #expect(purged.output.contains("purged 1"))
            #expect(try await bus.parkedMessages(of: queue).isEmpty)
        }
    }
}
