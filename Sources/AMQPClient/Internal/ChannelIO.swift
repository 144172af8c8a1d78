import CRabbitMQ
import DequeModule

/// A request waiting for its reply. Each channel keeps them in the order they were sent;
/// a reply completes the oldest request it answers. (RabbitMQ may send `cancel-ok` after
/// the replies to methods sent after the `basic.cancel`, so a reply is not always the
/// answer to the oldest request.)
struct PendingReply {
    let replies: [amqp_method_number_t]
    let complete: (Result<ServerMethod, AMQPError>) -> Void
    /// A `basic.get` without no-ack: its message must be settled.
    var tracksDelivery = false

    init(replies: [amqp_method_number_t], complete: @escaping (Result<ServerMethod, AMQPError>) -> Void) {
        self.replies = replies
        self.complete = complete
    }

    init(replies: [amqp_method_number_t], continuation: ReplyContinuation?) {
        self.replies = replies
        self.complete = { result in
            switch result {
            case .success(let method): continuation?.resume(returning: method)
            case .failure(let error): continuation?.resume(throwing: error)
            }
        }
    }
}

/// The I/O thread's view of one open channel.
final class ChannelIO {
    enum State { case open, closing }

    let handle: AMQPChannel
    var state = State.open
    var pending: Deque<PendingReply> = []
    var consumers: [String: ConsumerStream] = [:]
    var content = ContentAssembly()
    var closeDeadline: ContinuousClock.Instant?
    var unsettled = UnsettledDeliveries()
    /// An ack held back so that the acks after it in the same batch of commands merge into
    /// one `basic.ack` with `multiple`; every delivery up to this tag is settled.
    var deferredAck: UInt64?
    /// The most recently cancelled manual-ack consumers, for deliveries that arrive after their
    /// cancel-ok (those must be requeued). Late deliveries follow the cancel closely, so a short
    /// memory is enough, and a channel that starts and stops many consumers does not grow.
    private var cancelledManualAckConsumers: Set<String> = []
    private var cancelledOrder: Deque<String> = []
    private static let cancelledMemory = 64

    // Publisher confirms: set when confirm.select is sent; the broker numbers publishes from 1.
    var confirmMode = false
    private var nextPublishSequence: UInt64 = 1
    private var unconfirmed: Deque<UnconfirmedPublish> = []
    /// Keep each unconfirmed message whole, to publish it again after a recovery.
    let keepsUnconfirmedMessages: Bool

    private struct UnconfirmedPublish {
        let sequence: UInt64
        let tracker: ConfirmTracker?
        /// Exchange and routing key of a mandatory publish, to match a `basic.return` to it.
        let mandatoryTarget: (exchange: String, routingKey: String)?
        var returned = false
        /// The message itself, kept only for republishing after a recovery.
        let message: PublishRequest?
    }

    // What recovery restores on a new connection.
    /// Increases with every connection the channel is opened on. Settlements carry the
    /// generation of their delivery and are dropped when it is not the current one.
    private(set) var generation: UInt32 = 0
    /// The prefetch set with `basic.qos`, per consumer (`false`) and for the channel (`true`).
    var prefetch: [Bool: UInt16] = [:]
    /// How each live consumer was started. A consumer leaves it as soon as it is being
    /// cancelled, so that a recovery never brings back a consumer the application stopped.
    var consumerSpecs: [String: ConsumerSpec] = [:]

    struct ConsumerSpec {
        var queue: String
        let noAck: Bool
        let exclusive: Bool
        let arguments: AMQPFieldTable
        /// Consumers restore in the order they were started.
        let order: UInt64
    }

    init(handle: AMQPChannel, keepsUnconfirmedMessages: Bool) {
        self.handle = handle
        self.keepsUnconfirmedMessages = keepsUnconfirmedMessages
    }

    func retire(_ stream: ConsumerStream) {
        guard !stream.noAck, cancelledManualAckConsumers.insert(stream.consumerTag).inserted else { return }
        cancelledOrder.append(stream.consumerTag)
        if cancelledOrder.count > Self.cancelledMemory, let oldest = cancelledOrder.popFirst() {
            cancelledManualAckConsumers.remove(oldest)
        }
    }

    func wasCancelledWithManualAck(_ consumerTag: String) -> Bool {
        cancelledManualAckConsumers.contains(consumerTag)
    }

    var id: UInt16 { handle.ref.id }
    var epoch: UInt32 { handle.ref.epoch }

    /// Completes the oldest pending request that `method` answers.
    @discardableResult
    func resolveNext(_ method: ServerMethod) -> Bool {
        let id: amqp_method_number_t? =
            if case .gotDelivery = method { AMQP_BASIC_GET_OK_METHOD } else { method.replyID }
        guard let id, let index = oldestPending(answeredBy: id) else { return false }
        let request = pending.remove(at: index)
        request.complete(.success(method))
        return true
    }

    func oldestPending(answeredBy reply: amqp_method_number_t) -> Int? {
        pending.firstIndex { $0.replies.contains(reply) }
    }

    /// Records a publish that was written while the channel is in confirm mode.
    func published(_ request: PublishRequest) {
        guard confirmMode else { return }
        unconfirmed.append(
            UnconfirmedPublish(
                sequence: nextPublishSequence, tracker: request.confirm,
                mandatoryTarget: request.mandatory ? (request.exchange, request.routingKey) : nil,
                message: keepsUnconfirmedMessages ? request : nil))
        nextPublishSequence += 1
    }

    /// Resolves publishes on `basic.ack` / `basic.nack`. Confirms may arrive out of order.
    func confirm(_ sequence: UInt64, multiple: Bool, acked: Bool) {
        if multiple {
            while let first = unconfirmed.first, first.sequence <= sequence {
                unconfirmed.removeFirst()
                first.tracker?.resolve(acked: acked)
            }
        } else if let index = unconfirmedIndex(of: sequence) {
            unconfirmed.remove(at: index).tracker?.resolve(acked: acked)
        }
    }

    /// Matches a `basic.return` to the oldest unconfirmed mandatory publish to the same exchange
    /// and routing key (the broker handles a channel's publishes in order and sends the return
    /// before that publish's ack). Returns whether one was found.
    func returned(exchange: String, routingKey: String, error: AMQPError) -> Bool {
        guard
            let index = unconfirmed.firstIndex(where: {
                !$0.returned && $0.mandatoryTarget?.exchange == exchange && $0.mandatoryTarget?.routingKey == routingKey
            })
        else { return false }
        unconfirmed[index].returned = true
        unconfirmed[index].tracker?.markReturned(error)
        return true
    }

    private func unconfirmedIndex(of sequence: UInt64) -> Int? {
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

    private func failUnconfirmed(_ cause: AMQPError) {
        guard !unconfirmed.isEmpty else { return }
        let error = AMQPError(
            code: .outcomeUnknown,
            message: "the channel closed before the broker confirmed the message: \(cause.message)",
            replyCode: cause.replyCode, replyText: cause.replyText)
        let waiting = unconfirmed
        unconfirmed.removeAll()
        for publish in waiting { publish.tracker?.fail(error) }
    }

    /// The connection was lost and the channel will be opened again on a new one: forgets
    /// everything that belonged to the old connection. Pending requests fail with `error`;
    /// unconfirmed publishes fail with ``AMQPError/Code/outcomeUnknown`` unless they are kept
    /// for republishing (see ``takeMessagesToRepublish()``).
    func resetForNewConnection(lost error: AMQPError) {
        generation &+= 1
        handle.setGeneration(generation)
        failPending(error)
        content = ContentAssembly()
        unsettled = UnsettledDeliveries()
        deferredAck = nil
        cancelledManualAckConsumers.removeAll()
        cancelledOrder.removeAll()
        nextPublishSequence = 1
        if !keepsUnconfirmedMessages { failUnconfirmed(error) }
        for (tag, stream) in consumers {
            if consumerSpecs[tag] == nil || stream.isTerminated {
                // Stopped by the application: nothing to restore.
                consumers[tag] = nil
                consumerSpecs[tag] = nil
                stream.finish(nil)
            } else if !stream.noAck {
                stream.discardBuffered()
            }
        }
    }

    /// The unconfirmed messages kept at the loss, in publish order, for publishing again.
    func takeMessagesToRepublish() -> [PublishRequest] {
        let messages = unconfirmed.compactMap(\.message)
        unconfirmed.removeAll()
        return messages
    }

    func failPending(_ error: AMQPError) {
        let waiting = pending
        pending.removeAll()
        for reply in waiting { reply.complete(.failure(error)) }
    }

    /// Ends every consumer (normally when `consumersWith` is `nil`) and resolves every pending
    /// request: with `pendingWith` as an error, or, when it is `nil`, as the close-ok it waits for.
    func finish(consumersWith consumerError: AMQPError?, pendingWith pendingError: AMQPError?) {
        failUnconfirmed(pendingError ?? .channelClosedByApplication(id))
        for stream in consumers.values { stream.finish(consumerError) }
        consumers.removeAll()
        let waiting = pending
        pending.removeAll()
        for reply in waiting {
            if let pendingError {
                reply.complete(.failure(pendingError))
            } else {
                reply.complete(.success(.ok(AMQP_CHANNEL_CLOSE_OK_METHOD)))
            }
        }
    }
}

/// Puts a message back together from its method, content header and body frames.
struct ContentAssembly {
    enum Kind {
        case delivery(consumerTag: String)
        case get(messageCount: UInt32)
        case returned(replyCode: UInt16, replyText: String)
    }

    struct Completed {
        let kind: Kind
        let deliveryTag: UInt64
        let redelivered: Bool
        let exchange: String
        let routingKey: String
        let properties: AMQPProperties
        let body: [UInt8]

        func delivery(on channel: ChannelIO, consumerTag: String?, messageCount: UInt32?, autoAcknowledged: Bool)
            -> AMQPDelivery
        {
            AMQPDelivery(
                body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey, consumerTag: consumerTag, messageCount: messageCount,
                isAutoAcknowledged: autoAcknowledged, channel: channel.handle, generation: channel.generation)
        }
    }

    private struct Started {
        let kind: Kind
        let deliveryTag: UInt64
        let redelivered: Bool
        let exchange: String
        let routingKey: String
        var properties = AMQPProperties()
        var bodySize = 0
        var body: [UInt8] = []
    }

    private var started: Started?

    mutating func start(_ kind: Kind, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String) {
        started = Started(
            kind: kind, deliveryTag: deliveryTag, redelivered: redelivered, exchange: exchange, routingKey: routingKey)
    }

    mutating func header(properties: AMQPProperties, bodySize: Int) -> Completed? {
        guard started != nil else { return nil }
        started!.properties = properties
        started!.bodySize = bodySize
        if bodySize == 0 { return complete() }
        return nil
    }

    mutating func body(_ fragment: UnsafeRawBufferPointer) -> Completed? {
        guard started != nil else { return nil }
        if started!.body.isEmpty && fragment.count == started!.bodySize {
            // The common case: the whole body in one frame, copied once.
            started!.body = Array(fragment)
        } else {
            if started!.body.isEmpty { started!.body.reserveCapacity(started!.bodySize) }
            started!.body.append(contentsOf: fragment)
        }
        return started!.body.count >= started!.bodySize ? complete() : nil
    }

    private mutating func complete() -> Completed {
        let message = started!
        started = nil
        return Completed(
            kind: message.kind, deliveryTag: message.deliveryTag, redelivered: message.redelivered,
            exchange: message.exchange, routingKey: message.routingKey, properties: message.properties,
            body: message.body)
    }
}

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
