import DequeModule

/// The delivery tags on a channel the application has not settled yet (acked, nacked or
/// rejected), in delivery order. It tells when one `multiple` ack can stand for many.
struct UnsettledDeliveries {
    private var tags: Deque<UInt64> = []
    private var settledOutOfOrder: Set<UInt64> = []

    mutating func delivered(_ tag: UInt64) {
        tags.append(tag)
    }

    mutating func settle(_ tag: UInt64, multiple: Bool) {
        if multiple {
            while let first = tags.first, first <= tag { tags.removeFirst() }
            if !settledOutOfOrder.isEmpty { settledOutOfOrder = settledOutOfOrder.filter { $0 > tag } }
        } else if tags.first == tag {
            tags.removeFirst()
        } else {
            settledOutOfOrder.insert(tag)
        }
        while !settledOutOfOrder.isEmpty, let first = tags.first, settledOutOfOrder.remove(first) != nil {
            tags.removeFirst()
        }
    }

    /// How many deliveries wait to be settled (a few settled out of order may still count).
    var count: Int { tags.count }

    /// Whether every delivery with a tag up to `tag` is settled.
    func allSettled(upTo tag: UInt64) -> Bool {
        (tags.first ?? .max) > tag
    }
}
