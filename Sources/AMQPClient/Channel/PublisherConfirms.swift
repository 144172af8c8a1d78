import DequeModule

/// A channel's publisher confirms: numbers each publish made after `confirm.select` went out,
/// and resolves their trackers on the broker's `basic.ack`, `basic.nack` and `basic.return`.
struct PublisherConfirms {
    private struct Unconfirmed {
        let sequence: UInt64
        let tracker: ConfirmTracker?
        /// Exchange and routing key of a mandatory publish, to match a `basic.return` to it.
        let mandatoryTarget: (exchange: String, routingKey: String)?
        var returned = false
        /// The message itself, kept only for republishing after a recovery.
        let message: PublishRequest?
    }

    /// `confirm.select` was sent on this channel: the broker numbers publishes from then on.
    /// (``AMQPChannel/isConfirmMode`` is the application's side: whether publishes get a
    /// tracker. A publish queued before the `confirm.select` ran has none, but counts here.)
    var isSelected = false
    /// Keep each unconfirmed message whole, to publish it again after a recovery.
    let keepsMessages: Bool
    private var nextSequence: UInt64 = 1
    private var unconfirmed: Deque<Unconfirmed> = []

    init(keepsMessages: Bool) {
        self.keepsMessages = keepsMessages
    }

    var unconfirmedCount: Int { unconfirmed.count }

    /// Records a publish that was written. Without confirm mode there is nothing to track.
    mutating func published(_ request: PublishRequest) {
        guard isSelected else { return }
        unconfirmed.append(
            Unconfirmed(
                sequence: nextSequence, tracker: request.confirm,
                mandatoryTarget: request.mandatory ? (request.exchange, request.routingKey) : nil,
                message: keepsMessages ? request : nil))
        nextSequence += 1
    }

    /// Resolves publishes on `basic.ack` / `basic.nack`, which may arrive out of order.
    /// Returns how many publishes the ack or nack confirmed.
    @discardableResult
    mutating func confirm(_ sequence: UInt64, multiple: Bool, acked: Bool) -> Int {
        if multiple {
            var confirmed = 0
            while let first = unconfirmed.first, first.sequence <= sequence {
                unconfirmed.removeFirst()
                first.tracker?.resolve(acked: acked)
                confirmed += 1
            }
            return confirmed
        } else if let index = index(of: sequence) {
            unconfirmed.remove(at: index).tracker?.resolve(acked: acked)
            return 1
        }
        return 0
    }

    /// Matches a `basic.return` to the oldest unconfirmed mandatory publish to the same exchange
    /// and routing key (the broker handles a channel's publishes in order and sends the return
    /// before that publish's ack). Returns whether one was found.
    mutating func returned(exchange: String, routingKey: String, error: AMQPError) -> Bool {
        guard
            let index = unconfirmed.firstIndex(where: {
                !$0.returned && $0.mandatoryTarget?.exchange == exchange && $0.mandatoryTarget?.routingKey == routingKey
            })
        else { return false }
        unconfirmed[index].returned = true
        unconfirmed[index].tracker?.markReturned(error)
        return true
    }

    /// Fails every unconfirmed publish with ``AMQPError/Code/outcomeUnknown``: the channel closed
    /// before the broker said.
    mutating func failAll(_ cause: AMQPError) {
        guard !unconfirmed.isEmpty else { return }
        let error = AMQPError.outcomeUnknown(cause)
        let waiting = unconfirmed
        unconfirmed.removeAll()
        for publish in waiting { publish.tracker?.fail(error) }
    }

    /// A new connection numbers publishes from 1 again. What was unconfirmed fails, unless its
    /// messages are kept for ``takeMessagesToRepublish()``.
    mutating func resetForNewConnection(lost error: AMQPError) {
        nextSequence = 1
        if !keepsMessages { failAll(error) }
    }

    /// The unconfirmed messages kept at the loss, in publish order, for publishing again.
    mutating func takeMessagesToRepublish() -> [PublishRequest] {
        let messages = unconfirmed.compactMap(\.message)
        unconfirmed.removeAll()
        return messages
    }

    /// Binary search: `unconfirmed` is in sequence order.
    private func index(of sequence: UInt64) -> Int? {
        var low = 0
        var high = unconfirmed.count - 1
        while low <= high {
            let middle = (low + high) / 2
            let candidate = unconfirmed[middle].sequence
            if candidate == sequence { return middle }
            if candidate < sequence { low = middle + 1 } else { high = middle - 1 }
        }
        return nil
    }
}
