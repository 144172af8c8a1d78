/// The broker's verdict on one publish, on a channel in confirm mode
/// (``AMQPChannel/enablePublisherConfirms()``).
///
/// ```swift
/// try await channel.enablePublisherConfirms()
/// try await channel.publish(body, routingKey: "orders").confirmed()   // one at a time
///
/// var window: [AMQPPublishConfirmation] = []                           // many in flight
/// for event in events { window.append(try await channel.publish(event, routingKey: "orders")) }
/// for confirmation in window { try await confirmation.confirmed() }
/// ```
///
/// A message counts as safely published once ``confirmed()`` returns: the broker has taken
/// responsibility for it (for a persistent message on a durable queue, written it to disk).
public struct AMQPPublishConfirmation: Sendable {
    let tracker: ConfirmTracker?

    /// `false` when the channel was not in confirm mode: there is no verdict to wait for.
    public var isTracked: Bool { tracker != nil }

    /// Waits for the broker's verdict. Returns when the broker acknowledged the message.
    ///
    /// Throws ``AMQPError/Code/publishNacked`` when the broker refused it,
    /// ``AMQPError/Code/messageReturned`` when a `mandatory` message could not be routed, and
    /// ``AMQPError/Code/outcomeUnknown`` when the channel or connection closed first (the
    /// message may or may not have been taken: publish it again if duplicates are acceptable).
    /// Throws ``AMQPError/Code/invalidArgument`` when the channel was not in confirm mode: the
    /// broker gives no verdict then, and returning would claim one (see ``isTracked``).
    public func confirmed() async throws(AMQPError) {
        guard let tracker else {
            throw .invalidArgument(
                "confirmed() needs a channel in confirm mode: call enablePublisherConfirms() before publishing")
        }
        try await tracker.wait()
    }
}
