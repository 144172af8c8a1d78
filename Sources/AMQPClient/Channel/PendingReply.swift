/// A request waiting for its reply.
struct PendingReply {
    /// The methods that answer it.
    let replies: [AMQPMethodID]
    let complete: (Result<ServerMethod, AMQPError>) -> Void
    /// A `basic.get` without no-ack: its message must be settled.
    var tracksDelivery = false
    /// When the call times out (``AMQPConnection/Configuration/callTimeout``).
    var deadline: ContinuousClock.Instant?

    init(replies: [AMQPMethodID], complete: @escaping (Result<ServerMethod, AMQPError>) -> Void) {
        self.replies = replies
        self.complete = complete
    }

    init(replies: [AMQPMethodID], continuation: ReplyContinuation?) {
        self.replies = replies
        self.complete = { result in
            switch result {
            case .success(let method): continuation?.resume(returning: method)
            case .failure(let error): continuation?.resume(throwing: error)
            }
        }
    }
}
