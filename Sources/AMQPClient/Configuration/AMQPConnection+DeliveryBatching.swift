extension AMQPConnection.Configuration {
    /// How a consumer's deliveries reach the task that iterates it.
    ///
    /// Handing deliveries from the connection's I/O thread to a waiting task wakes that task's
    /// thread, and a wake-up costs more CPU than handling a small message. While deliveries arrive
    /// in a steady stream (the last hand-off carried ``flowingBatch`` or more, less than four times
    /// ``maximumDelay`` before the next batch began), the I/O thread holds a new batch until it has
    /// ``maximumCount`` deliveries or its first has waited ``maximumDelay``, whichever comes first:
    /// several times fewer wake-ups at high rates, a fraction of a millisecond more latency there,
    /// and none for a message that arrives alone (a request, a round trip, a consumer with a small
    /// prefetch, the first message after a pause: nothing is held for them).
    ///
    /// It changes only when the iterating task wakes: never what is delivered, acknowledged or
    /// requeued, nor the order. A consumer whose task is busy gets everything buffered at once,
    /// as before. A batch is never larger than a quarter of the channel's prefetch, so the broker
    /// is never kept waiting for acknowledgements of messages the client holds back, and nothing
    /// is held when that quarter is no more than ``flowingBatch`` (a prefetch under 36 by default).
    public struct DeliveryBatching: Sendable, Hashable {
        /// The longest a delivery is held back. `.zero` turns batching off: every batch of frames
        /// read wakes the waiting task at once. Default: 250 µs.
        public var maximumDelay: Duration
        /// A held batch is handed over once it has this many deliveries. Default: 64.
        public var maximumCount: Int
        /// The stream counts as steady while the last hand-off carried at least this many
        /// deliveries. Default: 8.
        public var flowingBatch: Int

        /// Batching settings; every one left out keeps its default.
        public init(maximumDelay: Duration = .microseconds(250), maximumCount: Int = 64, flowingBatch: Int = 8) {
            self.maximumDelay = maximumDelay
            self.maximumCount = maximumCount
            self.flowingBatch = flowingBatch
        }

        /// Every batch of frames read wakes the waiting task at once.
        public static let disabled = DeliveryBatching(maximumDelay: .zero)

        var isEnabled: Bool { maximumDelay > .zero && maximumCount > 1 }

        /// A batch that begins this long after the last hand-off follows a pause in the stream,
        /// not a gap between two reads of it (on a busy machine the broker's sends come in bursts
        /// a few hundred microseconds apart).
        var pause: Duration { maximumDelay * 4 }

        /// The largest batch held for a consumer on a channel with `prefetch` (0: none).
        func batchLimit(prefetch: UInt16) -> Int {
            prefetch == 0 ? maximumCount : min(maximumCount, Int(prefetch) / 4)
        }
    }
}
