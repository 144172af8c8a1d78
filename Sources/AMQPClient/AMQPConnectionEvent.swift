extension AMQPConnection {
    /// Something that happened to a connection; see ``AMQPConnection/events()``.
    public enum Event: Sendable, Hashable {
        /// The broker blocked publishing (a memory or disk alarm). Publishes wait in the client.
        case blocked(reason: String)
        /// The broker unblocked publishing; waiting publishes go out.
        case unblocked
        /// The connection ended: `nil` when the application closed it, else why it failed.
        case closed(AMQPError?)
    }
}
