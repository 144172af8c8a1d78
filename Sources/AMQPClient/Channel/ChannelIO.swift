/// The I/O thread's view of one open channel: everything the connection tracks per channel,
/// each fact in one place. Touched only by the I/O thread.
final class ChannelIO {
    let handle: AMQPChannel
    /// Open, closing or gone: how the channel closes is decided there.
    var lifecycle: ChannelStateMachine
    var pendingReplies = PendingReplies()
    /// Live consumers by tag.
    var consumers: [String: ConsumerRecord] = [:] {
        didSet { lastConsumer = nil }
    }
    /// The consumer the last delivery went to: a channel's deliveries mostly go to one consumer.
    private var lastConsumer: ConsumerRecord?
    var content = ContentAssembly()
    var settlements = Settlements()
    var confirms: PublisherConfirms
    var recentlyCancelled = RecentlyCancelledConsumers()
    /// The prefetch set with `basic.qos`, per consumer (`false`) and for the channel (`true`),
    /// restored after a recovery.
    var prefetch: [Bool: UInt16] = [:]

    init(handle: AMQPChannel, keepsUnconfirmedMessages: Bool) {
        self.handle = handle
        self.lifecycle = ChannelStateMachine(id: handle.ref.id)
        self.confirms = PublisherConfirms(keepsMessages: keepsUnconfirmedMessages)
    }

    var id: UInt16 { handle.ref.id }
    var epoch: UInt32 { handle.ref.epoch }
    /// See ``AMQPChannel/generation``.
    var generation: UInt32 { handle.generation }

    /// Whether a settlement of a delivery received in `generation` may go out: one from before
    /// a recovery must not, since the broker requeued that delivery already and its tag may now
    /// name another one.
    func acceptsSettlement(fromGeneration generation: UInt32) -> Bool {
        generation == self.generation
    }

    // MARK: Consumers

    /// Registers a consumer before its `basic.consume` goes out, so no delivery is missed.
    func addConsumer(_ stream: ConsumerStream, spec: ConsumerRecord.Spec) {
        consumers[stream.consumerTag] = ConsumerRecord(stream: stream, restoreSpec: spec)
    }

    /// The live consumer a delivery with `tag` goes to.
    func consumer(tag: String) -> ConsumerRecord? {
        if let lastConsumer, lastConsumer.stream.consumerTag == tag { return lastConsumer }
        lastConsumer = consumers[tag]
        return lastConsumer
    }

    /// The consumer with `tag`, if it is still registered as `stream`.
    func isCurrent(_ stream: ConsumerStream) -> Bool {
        consumers[stream.consumerTag]?.stream === stream
    }

    /// The application is cancelling the consumer: a recovery before `cancel-ok` must not bring it back.
    func stopRestoring(_ consumerTag: String) {
        consumers[consumerTag]?.restoreSpec = nil
    }

    /// Removes a consumer that the broker cancelled or confirmed cancelled, and remembers it
    /// for deliveries that were already on their way.
    @discardableResult
    func removeConsumer(_ consumerTag: String) -> ConsumerStream? {
        guard let record = consumers.removeValue(forKey: consumerTag) else { return nil }
        if !record.stream.noAck { recentlyCancelled.insert(consumerTag) }
        return record.stream
    }

    /// A manual-ack consumer cancelled lately: its late deliveries must be requeued.
    func wasCancelledWithManualAck(_ consumerTag: String) -> Bool {
        recentlyCancelled.contains(consumerTag)
    }

    /// Whether a consumer that will be restored reads `queue`.
    func consumesFrom(_ queue: String) -> Bool {
        consumers.values.contains { $0.restoreSpec?.queue == queue }
    }

    /// A server-named queue got a new name in a recovery: its consumers follow it.
    func renameQueue(_ oldName: String, to newName: String) {
        for record in consumers.values where record.restoreSpec?.queue == oldName {
            record.restoreSpec?.queue = newName
            record.stream.queue = newName
        }
    }

    /// The consumers to start again on a new connection, in the order they were first started.
    /// Those the application stopped meanwhile are dropped.
    func consumersToRestore() -> [(tag: String, stream: ConsumerStream, spec: ConsumerRecord.Spec)] {
        var restorable: [(tag: String, stream: ConsumerStream, spec: ConsumerRecord.Spec)] = []
        for (tag, record) in consumers {
            guard let spec = record.restoreSpec, !record.stream.isTerminated else {
                consumers[tag] = nil
                record.stream.finish(nil)
                continue
            }
            restorable.append((tag, record.stream, spec))
        }
        return restorable.sorted { $0.spec.order < $1.spec.order }
    }

    // MARK: Connection loss and closing

    /// The connection was lost and the channel will be opened again on a new one: forgets
    /// everything that belonged to the old connection. Pending requests fail with `error`;
    /// unconfirmed publishes fail with ``AMQPError/Code/outcomeUnknown`` unless they are kept
    /// for republishing.
    func resetForNewConnection(lost error: AMQPError) {
        handle.advanceGeneration()
        pendingReplies.completeAll(failingWith: error)
        content = ContentAssembly()
        settlements = Settlements()
        recentlyCancelled.removeAll()
        confirms.resetForNewConnection(lost: error)
        for (tag, record) in consumers {
            if record.restoreSpec == nil || record.stream.isTerminated {
                // Stopped by the application: nothing to restore.
                consumers[tag] = nil
                record.stream.finish(nil)
            } else if !record.stream.noAck {
                record.stream.discardBuffered()
            }
        }
    }

    /// The broker did not confirm our `channel.close` in time: everything waiting fails.
    func failPending(_ error: AMQPError) {
        pendingReplies.completeAll(failingWith: error)
    }

    /// Ends every consumer (normally when `consumersWith` is `nil`) and resolves every pending
    /// request: with `pendingWith` as an error, or, when it is `nil`, as the close-ok it waits for.
    func finish(consumersWith consumerError: AMQPError?, pendingWith pendingError: AMQPError?) {
        confirms.failAll(pendingError ?? .channelClosedByApplication(id))
        for record in consumers.values { record.stream.finish(consumerError) }
        consumers.removeAll()
        pendingReplies.completeAll(failingWith: pendingError)
    }
}
