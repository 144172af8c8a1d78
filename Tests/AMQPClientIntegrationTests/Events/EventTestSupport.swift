import AMQPClient
import AMQPEvents
import Foundation
import Synchronization
import Testing

struct Shipped: AMQPEvent, Equatable {
    static let eventType = "test.Shipped"
    static let schemaVersion = 2
    var orderId: String
    var carrier: String
}

struct Charged: AMQPEvent, Equatable {
    static let eventType = "test.Charged"
    var orderId: String
    var amount: Int
}

struct Echo: AMQPRequest {
    typealias Response = Echoed
    static let eventType = "test.Echo"
    var text: String
    var delayMilliseconds = 0
    var fail = false
}

struct Echoed: AMQPEvent {
    static let eventType = "test.Echoed"
    var text: String
}

/// Runs `body` with an event bus on a test connection and a domain (exchange) no other test uses;
/// deletes the exchange and the queues named in `queues` (with their parking lots) however it ends.
func withEventBus(
    connection: AMQPConnection? = nil,
    _ body: (EventBus, _ domain: String, _ queues: QueuesToDelete) async throws -> Void
) async throws {
    let connection = if let connection { connection } else { try await TestBroker.connect() }
    let bus = EventBus(connection: connection, configuration: .init(appID: "event-tests", requestTimeout: .seconds(5)))
    let domain = TestBroker.uniqueName("events")
    let queues = QueuesToDelete()
    func cleanUp() async {
        await connection.close()
        try? await withTestConnection { admin in
            let channel = try await admin.openChannel()
            for queue in queues.withLock({ $0 }) {
                _ = try? await channel.deleteQueue(queue)
                _ = try? await channel.deleteQueue(EventTopology.parkingLot(of: queue))
            }
            try? await channel.deleteExchange(domain)
        }
    }
    do {
        try await body(bus, domain, queues)
        await cleanUp()
    } catch {
        await cleanUp()
        throw error
    }
}

/// Waits (bounded) until `queue`'s parking lot holds a message; returns what it holds.
func waitForParked(_ bus: EventBus, of queue: String, within seconds: Double = 10) async throws -> [ParkedMessage] {
    try await withTimeout(seconds, "a message in \(queue)'s parking lot") {
        while true {
            let parked = try await bus.parkedMessages(of: queue)
            if !parked.isEmpty { return parked }
            try await pollPause()
        }
    }
}

/// Counts what handlers saw: distinct ids, and ids seen again.
final class Seen: Sendable {
    private let state = Mutex<(ids: [String: Int], order: [String])>(([:], []))

    func add(_ id: String) {
        state.withLock { state in
            state.ids[id, default: 0] += 1
            state.order.append(id)
        }
    }

    var distinct: Int { state.withLock { $0.ids.count } }
    /// How many times `id` was seen.
    func count(_ id: String) -> Int { state.withLock { $0.ids[id] ?? 0 } }
    var duplicates: Int { state.withLock { $0.ids.values.reduce(0) { $0 + $1 - 1 } } }
    var order: [String] { state.withLock { $0.order } }

    /// Waits (bounded) until `count` distinct ids were seen.
    func wait(for count: Int, within seconds: Double = 10, _ what: String = "the events") async throws {
        try await withTimeout(seconds, what) {
            while self.distinct < count { try await Task.sleep(for: .milliseconds(10)) }
        }
    }
}

/// The queues a test declared, for it to delete at the end.
final class QueuesToDelete: Sendable {
    private let names = Mutex<[String]>([])

    func withLock<Result>(_ body: (inout [String]) -> Result) -> Result {
        names.withLock { body(&$0) }
    }
}
