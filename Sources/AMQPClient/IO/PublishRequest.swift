/// A message on its way to the I/O thread.
struct PublishRequest: Sendable {
    var exchange: String
    var routingKey: String
    var mandatory: Bool
    var properties: AMQPProperties
    var body: [UInt8]
    /// Set on a channel in confirm mode: receives the broker's verdict.
    var confirm: ConfirmTracker?
}
