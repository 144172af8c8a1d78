import DequeModule
import Foundation
import Synchronization

/// A RabbitMQ stand-in that lives in the process, for tests that must not need a broker.
///
/// Connect to it with `AMQPConnection.connect(to: broker)`:
/// the connection, its channels, publishers and consumers are the real client's, and only the
/// broker is replaced. It models what applications and `AMQPEvents` rely on: the default,
/// direct, fanout and topic exchanges, exchange-to-exchange bindings, durable, exclusive,
/// auto-delete and server-named queues, publisher confirms, `mandatory` returns, prefetch,
/// manual and automatic acknowledgement, requeueing, `basic.get`, per-queue and per-message
/// time-to-live with dead-lettering (`x-dead-letter-exchange`, `x-death`), and direct reply-to.
///
/// Time is real unless a test passes a `.manual(_:)` clock, which moves only when
/// ``advance(by:)`` is called: delayed retries then take no real time.
///
/// ```swift
/// let broker = InMemoryBroker(clock: .manual(.now))
/// let connection = try await AMQPConnection.connect(to: broker)
/// let bus = EventBus(connection: connection)
/// // … run a subscription whose handler fails once …
/// broker.advance(by: .seconds(60))   // the delayed retry comes back now
/// ```
///
/// A quorum queue counts each message's returns by a reject or a closed channel
/// (`x-delivery-count`; a nack does not count, as on RabbitMQ 4.3) and dead-letters one returned
/// more often than its `x-delivery-limit`.
///
/// What it does not model: persistence, clustering, streams, memory alarms, priorities,
/// `x-max-length`, and the broker's exact error texts beyond the codes.
public final class InMemoryBroker: Sendable {
    /// Where the broker's time comes from.
    public enum Clock: Sendable {
        /// Real time.
        case continuous
        /// Time that moves only by ``InMemoryBroker/advance(by:)``, starting at the given instant.
        case manual(ContinuousClock.Instant)
    }

    let state: Mutex<BrokerState>

    /// An empty broker, with only the default and `amq.*` exchanges, whose time runs by `clock`.
    public init(clock: Clock = .continuous) {
        let manualNow: ContinuousClock.Instant? = if case .manual(let start) = clock { start } else { nil }
        state = Mutex(BrokerState(manualNow: manualNow))
    }

    /// The broker's current time.
    public var now: ContinuousClock.Instant { state.withLock { $0.now } }

    /// Moves a manual clock forward and carries out what fell due: expired messages are
    /// dead-lettered (a delayed retry comes back) and delivered. On a continuous clock it only
    /// carries out what is due.
    public func advance(by duration: Duration) {
        let wakeUps = state.withLock { state -> [ConnectionCore] in
            if let manualNow = state.manualNow { state.manualNow = manualNow + duration }
            state.expireDue()
            return state.connectionCores
        }
        for core in wakeUps { core.wakeIOThread() }
    }

    /// Whether nothing is in flight: every delivery is settled, and no queue that has consumers
    /// holds a message. (Messages waiting for their time-to-live in a queue nobody consumes,
    /// such as a delayed retry, do not count.)
    public var isIdle: Bool {
        state.withLock { state in
            state.connections.values.allSatisfy { $0.channels.values.allSatisfy { $0.unacked.isEmpty } }
                && state.queues.values.allSatisfy { $0.consumers.isEmpty || $0.messages.isEmpty }
        }
    }

    /// The names of the queues that exist now.
    public var queueNames: [String] { state.withLock { $0.queues.keys.sorted() } }

    /// How many messages wait in `queue` (not counting those delivered and unacknowledged), or
    /// `nil` when it does not exist.
    public func messageCount(of queue: String) -> Int? {
        state.withLock { $0.queues[queue]?.messages.count }
    }

    /// How many messages from `queue` are delivered and not yet settled, or `nil` when it does
    /// not exist.
    public func unacknowledgedCount(of queue: String) -> Int? {
        state.withLock { state in
            guard state.queues[queue] != nil else { return nil }
            return state.connections.values.reduce(0) { count, connection in
                count + connection.channels.values.reduce(0) { $0 + $1.unacked.values.count { $0.queue == queue } }
            }
        }
    }
}

/// The broker's whole state, behind its one lock.
struct BrokerState {
    var manualNow: ContinuousClock.Instant?
    var exchanges: [String: InMemoryExchange] = [:]
    var queues: [String: InMemoryQueue] = [:]
    var connections: [Int: InMemoryConnectionState] = [:]
    var nextConnectionID = 1
    /// Direct reply-to addresses, to the consumer that reads them.
    var replyAddresses: [String: ConsumerKey] = [:]

    init(manualNow: ContinuousClock.Instant?) {
        self.manualNow = manualNow
        for (name, type) in [("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"), ("amq.headers", "headers")] {
            exchanges[name] = InMemoryExchange(name: name, type: type, durable: true, autoDelete: false)
        }
    }

    var now: ContinuousClock.Instant { manualNow ?? .now }

    var connectionCores: [ConnectionCore] { connections.values.map(\.core) }

    /// The earliest moment a message expires.
    var nextExpiry: ContinuousClock.Instant? {
        queues.values.compactMap { $0.messages.first?.expiresAt }.min()
    }
}

struct InMemoryExchange {
    struct Binding: Equatable {
        enum Destination: Equatable {
            case queue(String)
            case exchange(String)
        }
        var destination: Destination
        var routingKey: String
    }

    let name: String
    let type: String
    let durable: Bool
    let autoDelete: Bool
    var bindings: [Binding] = []

    init(name: String, type: String, durable: Bool, autoDelete: Bool) {
        self.name = name
        self.type = type
        self.durable = durable
        self.autoDelete = autoDelete
    }

    /// The bindings a message with `routingKey` takes.
    func matching(_ routingKey: String) -> [Binding] {
        switch type {
        case "fanout", "headers": bindings  // headers exchanges route everything here: a simplification
        case "topic": bindings.filter { Self.topic($0.routingKey, matches: routingKey) }
        default: bindings.filter { $0.routingKey == routingKey }
        }
    }

    /// AMQP topic matching: words split by `.`, `*` one word, `#` zero or more.
    static func topic(_ pattern: String, matches key: String) -> Bool {
        func match(_ p: ArraySlice<Substring>, _ k: ArraySlice<Substring>) -> Bool {
            guard let first = p.first else { return k.isEmpty }
            if first == "#" {
                if match(p.dropFirst(), k) { return true }
                return !k.isEmpty && match(p, k.dropFirst())
            }
            guard let word = k.first, first == "*" || first == word else { return false }
            return match(p.dropFirst(), k.dropFirst())
        }
        let patternWords = pattern.split(separator: ".", omittingEmptySubsequences: false)
        let keyWords = key.isEmpty ? [] : key.split(separator: ".", omittingEmptySubsequences: false)
        return match(patternWords[...], keyWords[...])
    }
}

struct InMemoryMessage {
    var body: [UInt8]
    var properties: AMQPProperties
    var exchange: String
    var routingKey: String
    var redelivered = false
    /// Returned to the queue this many times (a quorum queue's `x-delivery-count`).
    var returns = 0
    var expiresAt: ContinuousClock.Instant?
}

struct ConsumerKey: Hashable {
    var connection: Int
    var channel: UInt16
    var tag: String
}

struct InMemoryQueue {
    let name: String
    let durable: Bool
    let autoDelete: Bool
    /// The connection that declared it exclusive.
    let exclusiveOwner: Int?
    let arguments: AMQPFieldTable
    var messages: Deque<InMemoryMessage> = []
    var consumers: [ConsumerKey] = []
    /// The consumer the next message goes to first (round robin).
    var nextConsumer = 0

    var isQuorum: Bool { arguments["x-queue-type"] == .string("quorum") }

    /// A quorum queue's `x-delivery-limit`: a message returned more often is dead-lettered.
    var deliveryLimit: Int? {
        guard isQuorum else { return nil }
        return arguments["x-delivery-limit"]?.integerValue
    }

    var messageTTL: Duration? {
        arguments["x-message-ttl"]?.integerValue.map { .milliseconds($0) }
    }
}

struct InMemoryConsumer {
    let stream: ConsumerStream
    let queue: String
    let noAck: Bool
    /// Deliveries to it not yet settled.
    var unacked = 0
}

struct InMemoryChannelState {
    let handle: AMQPChannel
    var prefetch: UInt16 = 0
    var confirmMode = false
    var consumers: [String: InMemoryConsumer] = [:]
    /// Delivered and not yet settled, by tag, in delivery order.
    var unacked: [UInt64: (queue: String, message: InMemoryMessage, consumer: String?)] = [:]
    var nextDeliveryTag: UInt64 = 1
    /// Its direct reply-to address, once it consumes `amq.rabbitmq.reply-to`.
    var replyAddress: String?
}

struct InMemoryConnectionState {
    let core: ConnectionCore
    var channels: [UInt16: InMemoryChannelState] = [:]
}
