/// A channel's acks, nacks and rejects: which deliveries wait to be settled, and an ack held
/// back so that the in-order acks of one batch of commands merge into one `basic.ack` with
/// `multiple`.
struct Settlements {
    private(set) var unsettled = UnsettledDeliveries()
    /// Every delivery up to this tag is settled, and no ack for them has been sent yet.
    private(set) var heldAck: UInt64?

    /// What to send for a settlement.
    enum Action: Equatable {
        /// Nothing yet: the ack is merged into the held one. `first`: nothing was held before,
        /// so the channel must be listed for ``takeHeldAck()``.
        case hold(first: Bool)
        case send(ClientMethod)
        /// Send the held ack (`basic.ack` with `multiple`), then the method: a nack or reject
        /// must not reach deliveries that were acked but whose ack has not been sent.
        case sendHeldAckThen(ClientMethod, ClientMethod)
    }

    mutating func delivered(_ tag: UInt64) {
        unsettled.delivered(tag)
    }

    /// Records a settlement and says what to send for it.
    mutating func settle(_ method: ClientMethod) -> Action {
        switch method {
        case .basicAck(let tag, let multiple):
            unsettled.settle(tag, multiple: multiple)
            if unsettled.allSettled(upTo: tag) {
                defer { heldAck = max(heldAck ?? 0, tag) }
                return .hold(first: heldAck == nil)
            }
            return .send(method)
        case .basicNack(let tag, let multiple, _):
            unsettled.settle(tag, multiple: multiple)
        case .basicReject(let tag, _):
            unsettled.settle(tag, multiple: false)
        default:
            break
        }
        if let held = takeHeldAck() { return .sendHeldAckThen(held, method) }
        return .send(method)
    }

    /// The held ack, to send now, or `nil`.
    mutating func takeHeldAck() -> ClientMethod? {
        guard let tag = heldAck else { return nil }
        heldAck = nil
        return .basicAck(deliveryTag: tag, multiple: true)
    }

    /// How many deliveries wait to be settled.
    var unsettledCount: Int { unsettled.count }
}
