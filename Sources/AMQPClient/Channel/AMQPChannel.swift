import Synchronization

/// A channel: the lightweight session on a connection through which everything is
/// declared, published and consumed.
///
/// Open one with ``AMQPConnection/openChannel()``. A channel may be used from many tasks;
/// its operations reach the broker in the order they were called. When the broker
/// refuses an operation (for example `404 NOT_FOUND` for a missing queue) it closes the
/// channel: that call throws ``AMQPError/Code/channelClosed`` with the reply code, later
/// calls on the channel throw the same error, and the connection and its other channels
/// carry on. Open a new channel to continue.
public final class AMQPChannel: Sendable {
    let core: ConnectionCore
    let ref: ChannelRef
    private struct State {
        var closedError: AMQPError?
        /// Publishes get a confirmation tracker (see ``PublisherConfirms/isSelected`` for the wire's side).
        var confirmMode = false
        /// The per-consumer prefetch last set, which stream consumers require.
        var prefetchCount: UInt16?
    }

    private let state = Mutex(State())
    private let unconfirmedLimiter: UnconfirmedPublishLimiter
    /// The channel's current incarnation: it advances each time a recovery opens the channel
    /// on a new connection. Deliveries carry the one they came in; settling a delivery from an
    /// earlier one does nothing (its tag may name another delivery now).
    private let currentGeneration = Atomic<UInt32>(0)

    init(core: ConnectionCore, ref: ChannelRef) {
        self.core = core
        self.ref = ref
        self.unconfirmedLimiter = UnconfirmedPublishLimiter(limit: core.configuration.unconfirmedPublishLimit)
    }

    /// The channel number on its connection.
    public var id: UInt16 { ref.id }

    /// `false` once the channel was closed, by the application or the broker.
    public var isOpen: Bool { closedError == nil && core.isOpen }

    /// Why the channel closed, or `nil` while it is open.
    public var closedError: AMQPError? { state.withLock { $0.closedError } }

    /// Whether ``enablePublisherConfirms()`` was called on this channel.
    public var isConfirmMode: Bool { state.withLock { $0.confirmMode } }

    // MARK: Exchanges

    /// Declares an exchange, creating it unless it exists with the same settings.
    ///
    /// - Parameters:
    ///   - name: the exchange's name.
    ///   - type: how the exchange routes messages to its bindings.
    ///   - durable: the exchange survives a broker restart.
    ///   - autoDelete: the exchange is deleted when its last binding is removed.
    ///   - internal: the exchange accepts messages only from other exchanges, never from publishers.
    ///   - passive: only check that the exchange exists (`404 NOT_FOUND` if not); nothing is created.
    ///   - arguments: optional exchange arguments, such as `alternate-exchange`.
    public func declareExchange(
        _ name: String,
        type: AMQPExchangeType = .direct,
        durable: Bool = false,
        autoDelete: Bool = false,
        `internal`: Bool = false,
        passive: Bool = false,
        arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) {
        try AMQPError.checkShortString(name, "exchange name")
        try AMQPError.checkShortString(type.name, "exchange type")
        try arguments.validate("argument")
        _ = try await call(
            .exchangeDeclare(
                name: name, type: type.name, passive: passive, durable: durable, autoDelete: autoDelete,
                isInternal: `internal`, arguments: arguments))
    }

    /// Deletes an exchange. With `ifUnused`, fails (`406`) while queues or exchanges are bound to it.
    public func deleteExchange(_ name: String, ifUnused: Bool = false) async throws(AMQPError) {
        try AMQPError.checkShortString(name, "exchange name")
        _ = try await call(.exchangeDelete(name: name, ifUnused: ifUnused))
    }

    /// Routes messages from exchange `source` to exchange `destination`.
    public func bindExchange(
        _ destination: String, to source: String, routingKey: String = "", arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) {
        try checkBinding(destination, source, routingKey, arguments)
        _ = try await call(
            .exchangeBind(destination: destination, source: source, routingKey: routingKey, arguments: arguments))
    }

    /// Removes a binding made with ``bindExchange(_:to:routingKey:arguments:)``.
    public func unbindExchange(
        _ destination: String, from source: String, routingKey: String = "", arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) {
        try checkBinding(destination, source, routingKey, arguments)
        _ = try await call(
            .exchangeUnbind(destination: destination, source: source, routingKey: routingKey, arguments: arguments))
    }

    // MARK: Queues

    /// Declares a queue, creating it unless it exists with the same settings.
    ///
    /// - Parameters:
    ///   - name: the queue's name; `""` lets the broker choose one (read it from the result).
    ///   - durable: the queue survives a broker restart (its persistent messages too).
    ///   - exclusive: only this connection may use the queue, and it is deleted when the connection closes.
    ///   - autoDelete: the queue is deleted when its last consumer is cancelled.
    ///   - passive: only check that the queue exists (`404 NOT_FOUND` if not) and read its counts.
    ///   - arguments: optional queue arguments, such as `x-message-ttl`, `x-dead-letter-exchange`,
    ///     `x-max-length` or `x-queue-type`.
    /// - Returns: the queue's name and its message and consumer counts.
    @discardableResult
    public func declareQueue(
        _ name: String = "",
        durable: Bool = false,
        exclusive: Bool = false,
        autoDelete: Bool = false,
        passive: Bool = false,
        arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) -> AMQPQueueInfo {
        try AMQPError.checkShortString(name, "queue name")
        try arguments.validate("argument")
        let reply = try await call(
            .queueDeclare(
                name: name, passive: passive, durable: durable, exclusive: exclusive, autoDelete: autoDelete,
                arguments: arguments))
        guard case .queueDeclareOk(let info) = reply else { throw unexpected(reply) }
        return info
    }

    /// Declares a durable queue of `type` (classic, quorum or stream, with its options), adding
    /// `arguments` to those the type sets.
    @discardableResult
    public func declareQueue(
        _ name: String, type: AMQPQueueType, arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) -> AMQPQueueInfo {
        var merged = type.arguments
        for (key, value) in arguments { merged[key] = value }
        return try await declareQueue(name, durable: true, arguments: merged)
    }

    /// Routes messages from `exchange` whose routing key matches `routingKey` into `queue`.
    public func bindQueue(
        _ queue: String, to exchange: String, routingKey: String = "", arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) {
        try checkBinding(queue, exchange, routingKey, arguments)
        _ = try await call(.queueBind(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments))
    }

    /// Removes a binding made with ``bindQueue(_:to:routingKey:arguments:)``.
    public func unbindQueue(
        _ queue: String, from exchange: String, routingKey: String = "", arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) {
        try checkBinding(queue, exchange, routingKey, arguments)
        _ = try await call(.queueUnbind(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments))
    }

    /// Removes every ready message from a queue. Returns how many were removed.
    @discardableResult
    public func purgeQueue(_ name: String) async throws(AMQPError) -> UInt32 {
        try AMQPError.checkShortString(name, "queue name")
        let reply = try await call(.queuePurge(name: name))
        guard case .messageCount(_, let count) = reply else { throw unexpected(reply) }
        return count
    }

    /// Deletes a queue and its messages. Returns how many messages it held.
    ///
    /// - Parameters:
    ///   - name: the queue to delete.
    ///   - ifUnused: fail (`406`) while the queue has consumers.
    ///   - ifEmpty: fail (`406`) while the queue holds messages.
    @discardableResult
    public func deleteQueue(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws(AMQPError)
        -> UInt32
    {
        try AMQPError.checkShortString(name, "queue name")
        let reply = try await call(.queueDelete(name: name, ifUnused: ifUnused, ifEmpty: ifEmpty))
        guard case .messageCount(_, let count) = reply else { throw unexpected(reply) }
        return count
    }

    // MARK: Publishing

    /// Puts the channel in confirm mode: from now on the broker acknowledges every message
    /// published on it, and ``publish(_:exchange:routingKey:mandatory:properties:)-([UInt8],_,_,_,_)``
    /// returns a confirmation to await. Confirm mode cannot be turned off.
    public func enablePublisherConfirms() async throws(AMQPError) {
        // Set first: publishes from other tasks that follow confirm.select on the wire must be tracked.
        state.withLock { $0.confirmMode = true }
        _ = try await call(.confirmSelect)
    }

    /// Publishes a message.
    ///
    /// Returns once the message is queued on the connection, in order with everything else
    /// this channel sends; it suspends only while the connection's publish buffer is full.
    /// On a channel in confirm mode, await the returned confirmation's
    /// ``AMQPPublishConfirmation/confirmed()`` to know the broker has the message. Without
    /// confirms AMQP reports no per-message outcome: a message to a missing exchange closes the
    /// channel (`404`), and the next call on it throws.
    ///
    /// - Parameters:
    ///   - body: the message body.
    ///   - exchange: the exchange to publish to; `""` is the default exchange, which routes to
    ///     the queue named by `routingKey`.
    ///   - routingKey: how the exchange routes the message.
    ///   - mandatory: ask the broker to return the message when no queue receives it.
    ///   - properties: content type, persistence, correlation id, headers and the rest.
    @discardableResult
    public func publish(
        _ body: [UInt8],
        exchange: String = "",
        routingKey: String,
        mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) async throws(AMQPError) -> AMQPPublishConfirmation {
        try AMQPError.checkShortString(exchange, "exchange name")
        try AMQPError.checkShortString(routingKey, "routing key")
        try properties.validate()
        if let tracer = core.tracer {
            return try await publishTraced(
                tracer, body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
        }
        return try await send(body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
    }

    /// Queues a validated publish on the connection.
    func send(
        _ body: [UInt8], exchange: String, routingKey: String, mandatory: Bool, properties: AMQPProperties
    ) async throws(AMQPError) -> AMQPPublishConfirmation {
        let confirmMode = try state.withLock { state throws(AMQPError) -> Bool in
            if let error = state.closedError { throw error }
            return state.confirmMode
        }
        let tracker: ConfirmTracker?
        if confirmMode {
            try await unconfirmedLimiter.acquire()
            tracker = ConfirmTracker(limiter: unconfirmedLimiter, metrics: core.metrics)
        } else {
            tracker = nil
        }
        do {
            try await core.submitPublish(
                PublishRequest(
                    exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties, body: body,
                    confirm: tracker),
                on: self)
        } catch {
            tracker?.fail(error)  // never sent: gives its place back
            throw error
        }
        return AMQPPublishConfirmation(tracker: tracker)
    }

    /// Publishes a message whose body is the UTF-8 of `body`.
    @discardableResult
    public func publish(
        _ body: String,
        exchange: String = "",
        routingKey: String,
        mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) async throws(AMQPError) -> AMQPPublishConfirmation {
        try await publish(
            Array(body.utf8), exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
    }

    // MARK: Consuming

    /// Limits how many unacknowledged deliveries the broker sends: to each consumer on this
    /// channel, or with `global` to the channel as a whole. `0` means no limit.
    ///
    /// Set it before ``consume(queue:consumerTag:noAck:exclusive:arguments:)``: it also bounds
    /// how many deliveries a consumer buffers.
    public func setPrefetch(count: UInt16, global: Bool = false) async throws(AMQPError) {
        _ = try await call(.basicQos(prefetchCount: count, global: global))
        if !global { state.withLock { $0.prefetchCount = count } }
    }

    /// Starts a consumer on `queue`. Iterate the result to receive deliveries.
    ///
    /// - Parameters:
    ///   - queue: the queue to consume from.
    ///   - consumerTag: identifies the consumer on this channel; generated when empty.
    ///   - noAck: the broker considers each message handled as soon as it is sent (faster; a
    ///     crash loses what was in flight). Deliveries of such a consumer must not be acknowledged.
    ///   - exclusive: no other consumer may use the queue at the same time (`403` otherwise).
    ///   - arguments: consumer arguments, such as `x-priority`.
    public func consume(
        queue: String,
        consumerTag: String = "",
        noAck: Bool = false,
        exclusive: Bool = false,
        arguments: AMQPFieldTable = [:]
    ) async throws(AMQPError) -> AMQPConsumer {
        try await startConsumer(
            queue: queue, consumerTag: consumerTag, noAck: noAck, exclusive: exclusive, arguments: arguments,
            streamConsumer: nil)
    }

    /// Reads a stream from `offset`: a consumer with manual acknowledgement (as streams require;
    /// set a prefetch first with ``setPrefetch(count:global:)``). Deliveries carry their
    /// ``AMQPDelivery/streamOffset``; when the connection recovers, the consumer resumes after the
    /// last delivery the application took, not from `offset` again.
    ///
    /// - Parameters:
    ///   - queue: the stream to read.
    ///   - offset: where to start reading.
    ///   - filter: only messages published with one of these
    ///     ``AMQPProperties/streamFilterValue``s (RabbitMQ 3.13 or newer). The broker's filter lets
    ///     some others through; the consumer drops them.
    ///   - consumerTag: identifies the consumer on this channel; generated when empty.
    public func consume(
        stream queue: String, from offset: AMQPStreamOffset, filter: Set<String>? = nil, consumerTag: String = ""
    ) async throws(AMQPError) -> AMQPConsumer {
        guard let prefetch = state.withLock({ $0.prefetchCount }), prefetch > 0 else {
            throw AMQPError(
                code: .invalidArgument,
                message: "a stream consumer needs a prefetch: call setPrefetch(count:) on the channel first")
        }
        var arguments: AMQPFieldTable = ["x-stream-offset": offset.argument]
        if let filter {
            guard let version = AMQPVersion(core.serverProperties), version >= AMQPVersion(3, 13, 0) else {
                throw AMQPError(
                    code: .invalidArgument,
                    message: "stream filtering needs RabbitMQ 3.13 or newer; this broker is \(Self.describeVersion(core.serverProperties))")
            }
            arguments["x-stream-filter"] = .array(filter.sorted().map(AMQPFieldValue.string))
        }
        return try await startConsumer(
            queue: queue, consumerTag: consumerTag, noAck: false, exclusive: false, arguments: arguments,
            streamConsumer: StreamConsumerState(filter: filter))
    }

    static func describeVersion(_ properties: AMQPFieldTable) -> String {
        if case .string(let version) = properties["version"] { return version }
        return "of an unknown version"
    }

    private func startConsumer(
        queue: String, consumerTag: String, noAck: Bool, exclusive: Bool, arguments: AMQPFieldTable,
        streamConsumer: StreamConsumerState?
    ) async throws(AMQPError) -> AMQPConsumer {
        try AMQPError.checkShortString(queue, "queue name")
        try AMQPError.checkShortString(consumerTag, "consumer tag")
        try arguments.validate("argument")
        let tag = consumerTag.isEmpty ? core.makeConsumerTag(channel: id) : consumerTag
        let core = self.core
        let stream = ConsumerStream(
            consumerTag: tag, queue: queue, noAck: noAck, bufferLimit: core.configuration.consumerBufferLimit,
            streamConsumer: streamConsumer, onDrained: { core.wakeIOThread() }
        ) { stream, unseen in
            self.stopOnBroker(stream, unseen: unseen)
        }
        let method = ClientMethod.basicConsume(
            queue: queue, consumerTag: tag, noAck: noAck, exclusive: exclusive, arguments: arguments)
        _ = try await awaitReply { continuation in .consume(ref, method, stream, continuation) }
        return AMQPConsumer(channel: self, stream: stream)
    }

    /// Fetches one message from `queue`, or returns `nil` when it is empty.
    ///
    /// Polling is slower than ``consume(queue:consumerTag:noAck:exclusive:arguments:)``; use it for
    /// occasional reads.
    public func get(from queue: String, noAck: Bool = false) async throws(AMQPError) -> AMQPDelivery? {
        try AMQPError.checkShortString(queue, "queue name")
        if let tracer = core.tracer { return try await getTraced(tracer, from: queue, noAck: noAck) }
        return try await getUntraced(from: queue, noAck: noAck)
    }

    func getUntraced(from queue: String, noAck: Bool) async throws(AMQPError) -> AMQPDelivery? {
        let reply = try await call(.basicGet(queue: queue, noAck: noAck))
        switch reply {
        case .gotDelivery(let delivery): return delivery
        case .getEmpty: return nil
        default: throw unexpected(reply)
        }
    }

    /// Acknowledges a delivery by tag; see ``AMQPDelivery/ack(multiple:)``.
    ///
    /// Delivery tags start again at 1 when the connection recovers, and a tag always refers to
    /// the channel's current connection: prefer ``AMQPDelivery/ack(multiple:)``, which knows
    /// which connection its delivery came on.
    public func ack(deliveryTag: UInt64, multiple: Bool = false) async throws(AMQPError) {
        try settle(.basicAck(deliveryTag: deliveryTag, multiple: multiple), generation: generation)
    }

    /// Negatively acknowledges a delivery by tag; see ``AMQPDelivery/nack(multiple:requeue:)``
    /// and, on tags after a recovery, ``ack(deliveryTag:multiple:)``.
    public func nack(deliveryTag: UInt64, multiple: Bool = false, requeue: Bool = true) async throws(AMQPError) {
        try settle(.basicNack(deliveryTag: deliveryTag, multiple: multiple, requeue: requeue), generation: generation)
    }

    /// Rejects one delivery by tag; see ``AMQPDelivery/reject(requeue:)`` and, on tags after a
    /// recovery, ``ack(deliveryTag:multiple:)``.
    public func reject(deliveryTag: UInt64, requeue: Bool = true) async throws(AMQPError) {
        try settle(.basicReject(deliveryTag: deliveryTag, requeue: requeue), generation: generation)
    }

    /// Asks the broker to redeliver every unacknowledged message on this channel.
    public func recover(requeue: Bool = true) async throws(AMQPError) {
        _ = try await call(.basicRecover(requeue: requeue))
    }

    // MARK: Closing

    /// Closes the channel. Consumers on it end; unacknowledged deliveries go back to their queues.
    /// Does nothing if the channel is already closed.
    public func close() async {
        let alreadyClosed = state.withLock { state -> Bool in
            if state.closedError != nil { return true }
            state.closedError = .channelClosedByApplication(id)
            return false
        }
        guard !alreadyClosed else { return }
        // Bounded: a connection that is recovering from an unreachable broker answers nothing.
        _ = await awaitAtMost(core.configuration.closeTimeout + ConnectionCore.closeGrace) {
            try? await self.awaitReply { continuation in .closeChannel(self.ref, continuation) }
        }
    }

    /// Starts closing the channel without waiting for the broker: ``close()`` for code that
    /// cannot suspend, such as a `deinit`. Calls fail from now on; what waits on the channel
    /// ends when the broker confirms.
    package func requestClose() {
        let alreadyClosed = state.withLock { state -> Bool in
            if state.closedError != nil { return true }
            state.closedError = .channelClosedByApplication(id)
            return false
        }
        guard !alreadyClosed else { return }
        core.submitOrFail(.closeChannel(ref, ReplyContinuation()))  // nobody waits for close-ok
    }

    // MARK: Internals

    func markClosed(_ error: AMQPError) {
        state.withLock { state in
            if state.closedError == nil { state.closedError = error }
        }
    }

    func settle(_ method: ClientMethod, generation: UInt32) throws(AMQPError) {
        if let error = closedError { throw error }
        try core.submit(.settle(ref, generation: generation, method))
    }

    var generation: UInt32 { currentGeneration.load(ordering: .acquiring) }

    /// The channel was opened on a new connection.
    func advanceGeneration() {
        _ = currentGeneration.wrappingAdd(1, ordering: .releasing)
    }

    private func call(_ method: ClientMethod) async throws(AMQPError) -> ServerMethod {
        if let error = closedError { throw error }
        return try await awaitReply { continuation in .call(ref, method, continuation) }
    }

    func awaitReply(_ command: (ReplyContinuation) -> Command) async throws(AMQPError) -> ServerMethod {
        try await withCancellableContinuation { continuation in
            core.submitOrFail(command(continuation))
        }
    }

    private func unexpected(_ reply: ServerMethod) -> AMQPError {
        AMQPError(code: .library, message: "unexpected reply from the broker: \(reply)")
    }

    private func checkBinding(
        _ destination: String, _ source: String, _ routingKey: String, _ arguments: AMQPFieldTable
    ) throws(AMQPError) {
        try AMQPError.checkShortString(destination, "destination name")
        try AMQPError.checkShortString(source, "source exchange name")
        try AMQPError.checkShortString(routingKey, "routing key")
        try arguments.validate("argument")
    }

    /// Called when a consumer's iteration ends: cancel it on the broker and give back what it never saw.
    func consumerStopped(_ stream: ConsumerStream) {
        _ = stream.terminate()
    }

    /// Cancels the consumer on the broker unless that already happened, and requeues the
    /// deliveries the application never saw (a closed channel has requeued them already).
    private func stopOnBroker(_ stream: ConsumerStream, unseen: [AMQPDelivery]) {
        guard isOpen, !stream.isFinished || !unseen.isEmpty else { return }
        let requeue = stream.noAck ? [] : unseen
        try? core.submit(.stopConsumer(ref, stream, requeue: requeue, nil))
    }

    func cancelConsumer(_ stream: ConsumerStream) async throws(AMQPError) {
        if stream.isFinished { return }
        // Bounded like close(): a connection recovering from an unreachable broker answers late.
        let answer = await awaitAtMost(core.configuration.closeTimeout + ConnectionCore.closeGrace) {
            do throws(AMQPError) {
                return Result<ServerMethod, AMQPError>.success(
                    try await self.awaitReply { continuation in .stopConsumer(self.ref, stream, requeue: [], continuation) })
            } catch {
                return .failure(error)
            }
        }
        switch answer {
        case .success?: break
        case .failure(let error)?: throw error
        case nil: stream.finish(nil)  // the I/O thread stops it on the broker's side when it can
        }
    }
}
