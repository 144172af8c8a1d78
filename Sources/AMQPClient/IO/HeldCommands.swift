import DequeModule

/// Commands the I/O thread holds back while the broker blocks the connection (a memory or disk
/// alarm). RabbitMQ stops reading a blocked connection at the next publish it receives, so
/// publishes wait here instead: acks, consumers and other channels keep working, and nothing
/// wedges the connection's reading.
struct HeldCommands {
    /// In their original order.
    private var commands: Deque<Command> = []
    /// Channels with a held publish: what follows it on the channel must not overtake it.
    private var channels: Set<UInt16> = []
    /// Bytes of held publishes; they still count against the publish buffer limit.
    private(set) var publishBytes = 0

    var isEmpty: Bool { commands.isEmpty }

    /// Whether `command` must wait while the connection is blocked: every publish, and what
    /// follows a held publish on its channel. Settlements, new channels and the connection's
    /// close never wait.
    func mustHold(_ command: Command) -> Bool {
        switch command {
        case .publish: true
        case .call(let ref, _, _), .consume(let ref, _, _, _), .stopConsumer(let ref, _, _, _), .closeChannel(let ref, _):
            channels.contains(ref.id)
        case .settle, .openChannel, .closeConnection: false
        }
    }

    mutating func hold(_ command: Command) {
        if case .publish(let ref, let request) = command {
            channels.insert(ref.id)
            publishBytes += MailboxState.publishCost(request)
        }
        commands.append(command)
    }

    /// Takes every held command out, in order (to run once unblocked, or to fail).
    mutating func takeAll() -> Deque<Command> {
        defer {
            commands = []
            channels.removeAll()
            publishBytes = 0
        }
        return commands
    }
}
