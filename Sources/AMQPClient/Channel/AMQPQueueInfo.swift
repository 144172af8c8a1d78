/// What the broker reports about a queue when it is declared.
public struct AMQPQueueInfo: Sendable, Hashable {
    /// The queue's name; the broker's choice when it was declared with an empty name.
    public var name: String
    /// Messages ready for delivery (not counting unacknowledged ones).
    public var messageCount: UInt32
    /// Active consumers.
    public var consumerCount: UInt32

    /// What the broker reported about queue `name`.
    public init(name: String, messageCount: UInt32, consumerCount: UInt32) {
        self.name = name
        self.messageCount = messageCount
        self.consumerCount = consumerCount
    }
}
