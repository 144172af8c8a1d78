public import Foundation

/// The kind of a queue, with its options, as declared by ``AMQPChannel/declareQueue(_:type:arguments:)``.
///
/// - ``classic``: one node's queue. On a cluster, it is gone while its node is down.
/// - ``quorum(_:)``: replicated over several nodes (Raft); keeps its messages when a minority of
///   the nodes is lost. The choice for work that must not be lost on a cluster.
/// - ``stream(_:)``: an append-only log that consumers read from an offset, and read again;
///   messages stay until the retention limits remove them.
///
/// Quorum queues and streams are always durable, never exclusive nor auto-delete.
public enum AMQPQueueType: Sendable, Hashable {
    /// A queue on one node (`x-queue-type: classic`).
    case classic
    /// A replicated queue (`x-queue-type: quorum`), with its options.
    case quorum(Quorum = Quorum())
    /// An append-only log (`x-queue-type: stream`), with its retention and placement options.
    case stream(Stream = Stream())

    /// The options of a quorum queue; `nil` and `false` leave RabbitMQ's defaults.
    public struct Quorum: Sendable, Hashable {
        /// How many times a message may be delivered (and returned) before it is dropped or
        /// dead-lettered (`x-delivery-limit`). RabbitMQ 4 defaults to 20; 3.x to unlimited.
        public var deliveryLimit: Int?
        /// `at-least-once` dead-lettering (`x-dead-letter-strategy`): the message stays until the
        /// dead-letter queue confirms it. It needs `x-overflow: reject-publish`, which it sets.
        public var atLeastOnceDeadLettering: Bool
        /// One consumer at a time gets the messages, in order; the next takes over when it goes
        /// (`x-single-active-consumer`).
        public var singleActiveConsumer: Bool
        /// On how many nodes it starts (`x-quorum-initial-group-size`); all of them by default.
        public var initialGroupSize: Int?

        /// Quorum queue options; every one left out keeps RabbitMQ's default.
        public init(
            deliveryLimit: Int? = nil, atLeastOnceDeadLettering: Bool = false, singleActiveConsumer: Bool = false,
            initialGroupSize: Int? = nil
        ) {
            self.deliveryLimit = deliveryLimit
            self.atLeastOnceDeadLettering = atLeastOnceDeadLettering
            self.singleActiveConsumer = singleActiveConsumer
            self.initialGroupSize = initialGroupSize
        }
    }

    /// The options of a stream; `nil` leaves RabbitMQ's defaults.
    public struct Stream: Sendable, Hashable {
        /// How long messages are kept (`x-max-age`, as RabbitMQ writes it: `7D`, `12h`, `30m`, `90s`).
        public var maximumAge: String?
        /// How many bytes are kept at most (`x-max-length-bytes`).
        public var maximumLengthBytes: Int?
        /// The size of the files the log is written in (`x-stream-max-segment-size-bytes`).
        public var segmentSizeBytes: Int?
        /// On how many nodes it starts (`x-initial-cluster-size`).
        public var initialClusterSize: Int?

        /// Stream options; every one left out keeps RabbitMQ's default.
        public init(
            maximumAge: String? = nil, maximumLengthBytes: Int? = nil, segmentSizeBytes: Int? = nil,
            initialClusterSize: Int? = nil
        ) {
            self.maximumAge = maximumAge
            self.maximumLengthBytes = maximumLengthBytes
            self.segmentSizeBytes = segmentSizeBytes
            self.initialClusterSize = initialClusterSize
        }
    }

    /// The declaration arguments that say so.
    public var arguments: AMQPFieldTable {
        var arguments: AMQPFieldTable = [:]
        switch self {
        case .classic:
            arguments["x-queue-type"] = "classic"
        case .quorum(let options):
            arguments["x-queue-type"] = "quorum"
            if let limit = options.deliveryLimit { arguments["x-delivery-limit"] = .int64(Int64(limit)) }
            if options.atLeastOnceDeadLettering {
                arguments["x-dead-letter-strategy"] = "at-least-once"
                arguments["x-overflow"] = "reject-publish"
            }
            if options.singleActiveConsumer { arguments["x-single-active-consumer"] = true }
            if let size = options.initialGroupSize { arguments["x-quorum-initial-group-size"] = .int64(Int64(size)) }
        case .stream(let options):
            arguments["x-queue-type"] = "stream"
            if let age = options.maximumAge { arguments["x-max-age"] = .string(age) }
            if let bytes = options.maximumLengthBytes { arguments["x-max-length-bytes"] = .int64(Int64(bytes)) }
            if let bytes = options.segmentSizeBytes { arguments["x-stream-max-segment-size-bytes"] = .int64(Int64(bytes)) }
            if let size = options.initialClusterSize { arguments["x-initial-cluster-size"] = .int64(Int64(size)) }
        }
        return arguments
    }
}

/// Where a stream consumer starts reading (`x-stream-offset`).
public enum AMQPStreamOffset: Sendable, Hashable {
    /// The oldest message the stream still has.
    case first
    /// The last chunk written.
    case last
    /// Only what is published from now on.
    case next
    /// A message's offset (deliveries carry theirs in ``AMQPDelivery/streamOffset``).
    case offset(Int64)
    /// The first message published at or after this time (seconds precision).
    case timestamp(Date)
    /// What was published within this interval before now, as RabbitMQ writes it (`1h`, `30m`, `7D`).
    case interval(String)

    var argument: AMQPFieldValue {
        switch self {
        case .first: "first"
        case .last: "last"
        case .next: "next"
        case .offset(let offset): .int64(offset)
        case .timestamp(let date): .timestamp(date)
        case .interval(let interval): .string(interval)
        }
    }
}
