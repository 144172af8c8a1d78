extension AMQPConnection {
    /// Something that happened to a connection; see ``AMQPConnection/events()``.
    public enum Event: Sendable, Hashable {
        /// The broker blocked publishing (a memory or disk alarm). Publishes wait in the client.
        case blocked(reason: String)
        /// The broker unblocked publishing; waiting publishes go out.
        case unblocked
        /// The connection was lost without the application asking; recovery begins. What was in
        /// flight has failed (see ``Configuration/Recovery``); new calls wait for the recovery.
        case connectionLost(AMQPError)
        /// Recovery attempt `attempt` (counting from 1) begins.
        case recovering(attempt: Int)
        /// Recovery attempt `attempt` failed. Another follows after a backoff, unless
        /// ``Configuration/Recovery/maximumAttempts`` is reached, in which case `.closed` follows.
        case recoveryFailed(attempt: Int, error: AMQPError)
        /// A server-named queue was declared again during recovery and got a new name. Its
        /// bindings and consumers moved to it.
        case queueRenamed(from: String, to: String)
        /// The connection is back: channels, topology and consumers are restored.
        case recovered
        /// The connection ended: `nil` when the application closed it, else why it failed.
        case closed(AMQPError?)
    }
}
