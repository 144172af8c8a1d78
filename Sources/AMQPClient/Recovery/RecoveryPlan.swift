/// What one recovery attempt restores on a new connection, in RabbitMQ's recommended order:
/// channels with their prefetch and confirm mode, then exchanges, queues and bindings (on a
/// channel of their own), then consumers, then the unconfirmed messages to publish again.
///
/// Built by the I/O thread from its channels and ``Topology`` once the new connection is open;
/// walked by ``ConnectionStateMachine``, which decides what each reply or refusal means.
struct RecoveryPlan: Equatable, Sendable {
    /// One application channel to reopen.
    struct Channel: Equatable, Sendable {
        var id: UInt16
        /// Per-consumer prefetch (`global: false`) goes before the channel's own, as an
        /// application sets it first.
        var prefetch: [Prefetch] = []
        var confirmMode = false
        /// Consumer tags to start again, in the order they first started.
        var consumerTags: [String] = []
        /// Whether unconfirmed messages wait to be published again on this channel.
        var republishes = false

        init(id: UInt16, prefetch: [Prefetch] = [], confirmMode: Bool = false, consumerTags: [String] = [], republishes: Bool = false) {
            self.id = id
            self.prefetch = prefetch.sorted { !$0.global && $1.global }
            self.confirmMode = confirmMode
            self.consumerTags = consumerTags
            self.republishes = republishes
        }
    }

    struct Prefetch: Equatable, Sendable {
        var count: UInt16
        var global: Bool
    }

    /// One recorded exchange, queue or binding, by its place in ``Topology``: a binding is
    /// read only when its turn comes, after the queues it names may have been renamed.
    struct Declaration: Equatable, Sendable {
        enum Kind: Equatable, Sendable { case exchange, queue, binding }
        var kind: Kind
        var index: Int
        /// The reply that confirms it (`queue.bind-ok` or `exchange.bind-ok` for a binding).
        var reply: AMQPMethodID
        /// For the log line when the broker refuses it.
        var description: String
        /// A queue's recorded name: a server-named queue gets a new one from its declare-ok.
        var queueName: String?

        init(kind: Kind, index: Int, reply: AMQPMethodID, description: String, queueName: String? = nil) {
            self.kind = kind
            self.index = index
            self.reply = reply
            self.description = description
            self.queueName = queueName
        }
    }

    var channels: [Channel]
    /// The free channel number the topology is declared on, `nil` when there is no topology.
    var topologyChannel: UInt16?
    var declarations: [Declaration]

    init(channels: [Channel], topologyChannel: UInt16? = nil, declarations: [Declaration] = []) {
        self.channels = channels.sorted { $0.id < $1.id }
        self.topologyChannel = declarations.isEmpty ? nil : topologyChannel
        self.declarations = topologyChannel == nil ? [] : declarations
    }

    /// The steps, in order.
    var steps: [RecoveryStep] {
        var steps: [RecoveryStep] = []
        for channel in channels { steps += RecoveryStep.reopening(channel) }
        if let topologyChannel {
            steps.append(.openTopologyChannel(topologyChannel))
            for declaration in declarations { steps.append(.declare(declaration, on: topologyChannel)) }
            steps.append(.closeTopologyChannel(topologyChannel))
        }
        for channel in channels {
            for tag in channel.consumerTags { steps.append(.consume(channel: channel.id, consumerTag: tag)) }
        }
        for channel in channels where channel.republishes { steps.append(.republish(channel: channel.id)) }
        return steps
    }
}

/// One thing a recovery attempt does on the new connection. Every step but ``republish(channel:)``
/// sends one method and waits for its reply.
enum RecoveryStep: Equatable, Sendable {
    case openChannel(UInt16)
    case setPrefetch(channel: UInt16, RecoveryPlan.Prefetch)
    case selectConfirms(channel: UInt16)
    case openTopologyChannel(UInt16)
    case declare(RecoveryPlan.Declaration, on: UInt16)
    case closeTopologyChannel(UInt16)
    case consume(channel: UInt16, consumerTag: String)
    /// Writes the channel's unconfirmed messages again; no reply.
    case republish(channel: UInt16)

    /// Opening `channel` again, with its prefetch and confirm mode.
    static func reopening(_ channel: RecoveryPlan.Channel) -> [RecoveryStep] {
        var steps: [RecoveryStep] = [.openChannel(channel.id)]
        for prefetch in channel.prefetch { steps.append(.setPrefetch(channel: channel.id, prefetch)) }
        if channel.confirmMode { steps.append(.selectConfirms(channel: channel.id)) }
        return steps
    }

    var channel: UInt16 {
        switch self {
        case .openChannel(let id), .openTopologyChannel(let id), .closeTopologyChannel(let id): id
        case .setPrefetch(let id, _), .selectConfirms(let id), .consume(let id, _), .republish(let id): id
        case .declare(_, let id): id
        }
    }

    /// The reply that completes the step; `nil` for one that waits for none.
    var reply: AMQPMethodID? {
        switch self {
        case .openChannel, .openTopologyChannel: .channelOpenOk
        case .setPrefetch: .basicQosOk
        case .selectConfirms: .confirmSelectOk
        case .declare(let declaration, _): declaration.reply
        case .closeTopologyChannel: .channelCloseOk
        case .consume: .basicConsumeOk
        case .republish: nil
        }
    }

    /// Whether the step belongs to an application channel (not the topology's own).
    var isOnApplicationChannel: Bool {
        switch self {
        case .openTopologyChannel, .declare, .closeTopologyChannel: false
        default: true
        }
    }
}
