import DequeModule

/// A channel's requests waiting for their replies, in the order they were sent. A reply
/// completes the oldest request it answers: RabbitMQ may send `cancel-ok` after the replies to
/// methods sent after the `basic.cancel`, so a reply is not always the answer to the oldest
/// request.
struct PendingReplies {
    private var waiting: Deque<PendingReply> = []

    var isEmpty: Bool { waiting.isEmpty }

    mutating func append(_ reply: PendingReply) {
        waiting.append(reply)
    }

    /// Completes the oldest request that `method` answers. Returns whether there was one.
    @discardableResult
    mutating func resolveNext(_ method: ServerMethod) -> Bool {
        let id: AMQPMethodID? = if case .gotDelivery = method { .basicGetOk } else { method.replyID }
        guard let id, let index = waiting.firstIndex(where: { $0.replies.contains(id) }) else { return false }
        waiting.remove(at: index).complete(.success(method))
        return true
    }

    /// Whether a request has waited past its deadline.
    func hasExpired(at now: ContinuousClock.Instant) -> Bool {
        waiting.contains { $0.deadline.map { $0 <= now } ?? false }
    }

    /// The earliest deadline of the requests waiting.
    var earliestDeadline: ContinuousClock.Instant? {
        waiting.lazy.compactMap(\.deadline).min()
    }

    /// The oldest request that `reply` would complete.
    func oldest(answeredBy reply: AMQPMethodID) -> PendingReply? {
        waiting.first { $0.replies.contains(reply) }
    }

    /// Completes every request: with `error`, or, when it is `nil`, as if `channel.close-ok`
    /// answered it (the channel closed as the application asked).
    mutating func completeAll(failingWith error: AMQPError?) {
        let requests = waiting
        waiting.removeAll()
        for request in requests {
            if let error {
                request.complete(.failure(error))
            } else {
                request.complete(.success(.ok(.channelCloseOk)))
            }
        }
    }
}
