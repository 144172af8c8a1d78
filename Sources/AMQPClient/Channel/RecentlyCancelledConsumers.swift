import DequeModule

/// The most recently cancelled manual-ack consumers of a channel, for deliveries that arrive
/// after their `cancel-ok` (those must be requeued). Late deliveries follow the cancel closely,
/// so a short memory is enough, and a channel that starts and stops many consumers does not grow.
struct RecentlyCancelledConsumers {
    private var tags: Set<String> = []
    private var order: Deque<String> = []
    static let capacity = 64

    mutating func insert(_ tag: String) {
        guard tags.insert(tag).inserted else { return }
        order.append(tag)
        if order.count > Self.capacity, let oldest = order.popFirst() {
            tags.remove(oldest)
        }
    }

    func contains(_ tag: String) -> Bool {
        tags.contains(tag)
    }

    mutating func removeAll() {
        tags.removeAll()
        order.removeAll()
    }
}
