import DequeModule
import Foundation

/// A refusal that closes the channel, as RabbitMQ's `channel.close` would.
struct ChannelRefusal: Error {
    var replyCode: UInt16
    var replyText: String
    var method: AMQPMethodID

    static func notFound(_ what: String, _ method: AMQPMethodID) -> Self {
        Self(replyCode: 404, replyText: "NOT_FOUND - no \(what) in vhost '/'", method: method)
    }

    static func precondition(_ text: String, _ method: AMQPMethodID) -> Self {
        Self(replyCode: 406, replyText: "PRECONDITION_FAILED - \(text)", method: method)
    }

    func error(channel: UInt16) -> AMQPError {
        .channelClosedByBroker(
            channel: channel, replyCode: replyCode, replyText: replyText, classID: method.classID, methodID: method.methodID)
    }
}

extension BrokerState {
    static let directReplyTo = "amq.rabbitmq.reply-to"

    // MARK: Methods with a reply

    mutating func call(_ method: ClientMethod, connection: Int, channel: UInt16) throws(ChannelRefusal) -> ServerMethod {
        switch method {
        case .exchangeDeclare(let name, let type, let passive, let durable, let autoDelete, _, _):
            let id = AMQPMethodID(classID: 40, methodID: 10)
            if let existing = exchanges[name] {
                guard passive || existing.type == type else {
                    throw .precondition("inequivalent arg 'type' for exchange '\(name)' in vhost '/'", id)
                }
            } else {
                if passive { throw .notFound("exchange '\(name)'", id) }
                exchanges[name] = InMemoryExchange(name: name, type: type, durable: durable, autoDelete: autoDelete)
            }
            return .ok(.exchangeDeclareOk)
        case .exchangeDelete(let name, _):
            exchanges[name] = nil
            for key in exchanges.keys { exchanges[key]?.bindings.removeAll { $0.destination == .exchange(name) } }
            return .ok(.exchangeDeleteOk)
        case .exchangeBind(let destination, let source, let routingKey, _):
            let id = AMQPMethodID(classID: 40, methodID: 30)
            guard exchanges[destination] != nil else { throw .notFound("exchange '\(destination)'", id) }
            guard exchanges[source] != nil else { throw .notFound("exchange '\(source)'", id) }
            let binding = InMemoryExchange.Binding(destination: .exchange(destination), routingKey: routingKey)
            if exchanges[source]?.bindings.contains(binding) == false { exchanges[source]?.bindings.append(binding) }
            return .ok(.exchangeBindOk)
        case .exchangeUnbind(let destination, let source, let routingKey, _):
            exchanges[source]?.bindings.removeAll { $0 == .init(destination: .exchange(destination), routingKey: routingKey) }
            return .ok(.exchangeUnbindOk)
        case .queueDeclare(let requested, let passive, let durable, let exclusive, let autoDelete, let arguments):
            let id = AMQPMethodID(classID: 50, methodID: 10)
            let name = requested.isEmpty ? "amq.gen-\(UUID().uuidString.lowercased())" : requested
            if let existing = queues[name] {
                if let owner = existing.exclusiveOwner, owner != connection {
                    throw ChannelRefusal(
                        replyCode: 405, replyText: "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '\(name)'",
                        method: id)
                }
            } else {
                if passive { throw .notFound("queue '\(name)'", id) }
                queues[name] = InMemoryQueue(
                    name: name, durable: durable, autoDelete: autoDelete, exclusiveOwner: exclusive ? connection : nil,
                    arguments: arguments)
            }
            let queue = queues[name]!
            return .queueDeclareOk(
                AMQPQueueInfo(name: name, messageCount: UInt32(queue.messages.count), consumerCount: UInt32(queue.consumers.count)))
        case .queueBind(let queue, let exchange, let routingKey, _):
            let id = AMQPMethodID(classID: 50, methodID: 20)
            guard queues[queue] != nil else { throw .notFound("queue '\(queue)'", id) }
            guard exchanges[exchange] != nil else { throw .notFound("exchange '\(exchange)'", id) }
            let binding = InMemoryExchange.Binding(destination: .queue(queue), routingKey: routingKey)
            if exchanges[exchange]?.bindings.contains(binding) == false { exchanges[exchange]?.bindings.append(binding) }
            return .ok(.queueBindOk)
        case .queueUnbind(let queue, let exchange, let routingKey, _):
            exchanges[exchange]?.bindings.removeAll { $0 == .init(destination: .queue(queue), routingKey: routingKey) }
            return .ok(.queueUnbindOk)
        case .queuePurge(let name):
            guard queues[name] != nil else { throw .notFound("queue '\(name)'", AMQPMethodID(classID: 50, methodID: 30)) }
            let count = queues[name]!.messages.count
            queues[name]!.messages.removeAll()
            return .messageCount(.queuePurgeOk, UInt32(count))
        case .queueDelete(let name, _, _):
            let count = queues[name]?.messages.count ?? 0
            deleteQueue(name)
            return .messageCount(.queueDeleteOk, UInt32(count))
        case .basicQos(let count, _):
            connections[connection]?.channels[channel]?.prefetch = count
            return .ok(.basicQosOk)
        case .confirmSelect:
            connections[connection]?.channels[channel]?.confirmMode = true
            return .ok(.confirmSelectOk)
        case .basicGet(let name, let noAck):
            guard queues[name] != nil else { throw .notFound("queue '\(name)'", AMQPMethodID(classID: 60, methodID: 70)) }
            expireDue()
            guard let message = queues[name]!.messages.popFirst(),
                let handle = connections[connection]?.channels[channel]?.handle
            else { return .getEmpty }
            var tag: UInt64 = 0
            if !noAck { tag = track(message, from: name, consumer: nil, connection: connection, channel: channel) }
            return .gotDelivery(
                AMQPDelivery(
                    body: message.body, properties: deliveryProperties(message, in: queues[name]!, byGet: true), deliveryTag: tag,
                    redelivered: message.redelivered, exchange: message.exchange, routingKey: message.routingKey,
                    consumerTag: nil, queue: name, messageCount: UInt32(queues[name]!.messages.count), isAutoAcknowledged: noAck,
                    channel: handle, generation: handle.generation))
        case .basicRecover:
            requeueAll(connection: connection, channel: channel)
            return .ok(.basicRecoverOk)
        default:
            throw ChannelRefusal(replyCode: 540, replyText: "NOT_IMPLEMENTED - \(method)", method: AMQPMethodID(rawValue: 0))
        }
    }

    // MARK: Publishing

    /// Routes a publish. Returns whether it reached a queue (or a direct reply-to consumer).
    mutating func publish(_ request: PublishRequest, connection: Int, channel: UInt16) throws(ChannelRefusal) -> Bool {
        var properties = request.properties
        if properties.replyTo == Self.directReplyTo {
            // RabbitMQ gives the publishing channel's own reply-to address.
            guard let address = connections[connection]?.channels[channel]?.replyAddress else {
                throw .precondition("fast reply consumer does not exist", AMQPMethodID(classID: 60, methodID: 40))
            }
            properties.replyTo = address
        }
        if request.exchange.isEmpty, let consumer = replyAddresses[request.routingKey] {
            deliverDirectly(request.body, properties: properties, routingKey: request.routingKey, to: consumer)
            return true
        }
        guard request.exchange.isEmpty || exchanges[request.exchange] != nil else {
            throw .notFound("exchange '\(request.exchange)'", AMQPMethodID(classID: 60, methodID: 40))
        }
        let now = self.now
        var message = InMemoryMessage(
            body: request.body, properties: properties, exchange: request.exchange, routingKey: request.routingKey)
        if let expiration = properties.expiration, let milliseconds = Int(expiration) {
            message.expiresAt = now + .milliseconds(milliseconds)
        }
        let targets = route(exchange: request.exchange, routingKey: request.routingKey)
        for name in targets { enqueue(message, in: name) }
        return !targets.isEmpty
    }

    /// The queues a message published to `exchange` with `routingKey` reaches, each once.
    func route(exchange: String, routingKey: String) -> [String] {
        if exchange.isEmpty { return queues[routingKey] != nil ? [routingKey] : [] }
        var reached: [String] = []
        var visited: Set<String> = []
        func follow(_ name: String) {
            guard visited.insert(name).inserted, let exchange = exchanges[name] else { return }
            for binding in exchange.matching(routingKey) {
                switch binding.destination {
                case .queue(let queue): if queues[queue] != nil && !reached.contains(queue) { reached.append(queue) }
                case .exchange(let next): follow(next)
                }
            }
        }
        follow(exchange)
        return reached
    }

    mutating func enqueue(_ message: InMemoryMessage, in name: String) {
        guard var queue = queues[name] else { return }
        var message = message
        if let ttl = queue.messageTTL {
            let expiry = now + ttl
            message.expiresAt = min(message.expiresAt ?? expiry, expiry)
        }
        queue.messages.append(message)
        queues[name] = queue
        dispatch(name)
    }

    // MARK: Consumers

    mutating func consume(
        queue name: String, tag: String, noAck: Bool, stream: ConsumerStream, connection: Int, channel: UInt16
    ) throws(ChannelRefusal) -> ServerMethod {
        let key = ConsumerKey(connection: connection, channel: channel, tag: tag)
        if name == Self.directReplyTo {
            let address = "\(Self.directReplyTo).\(UUID().uuidString.lowercased())"
            connections[connection]?.channels[channel]?.replyAddress = address
            connections[connection]?.channels[channel]?.consumers[tag] = InMemoryConsumer(stream: stream, queue: name, noAck: true)
            replyAddresses[address] = key
            return .consumeOk(consumerTag: tag)
        }
        guard queues[name] != nil else { throw .notFound("queue '\(name)'", AMQPMethodID(classID: 60, methodID: 20)) }
        connections[connection]?.channels[channel]?.consumers[tag] = InMemoryConsumer(stream: stream, queue: name, noAck: noAck)
        queues[name]!.consumers.append(key)
        dispatch(name)
        return .consumeOk(consumerTag: tag)
    }

    /// Cancels a consumer; the deliveries in `requeue` (never seen by the application) go back.
    mutating func cancel(tag: String, requeue: [AMQPDelivery], connection: Int, channel: UInt16) {
        guard let consumer = connections[connection]?.channels[channel]?.consumers.removeValue(forKey: tag) else { return }
        let key = ConsumerKey(connection: connection, channel: channel, tag: tag)
        if let address = connections[connection]?.channels[channel]?.replyAddress, replyAddresses[address] == key {
            replyAddresses[address] = nil
            connections[connection]?.channels[channel]?.replyAddress = nil
        }
        queues[consumer.queue]?.consumers.removeAll { $0 == key }
        let generation = connections[connection]?.channels[channel]?.handle.generation
        for delivery in requeue.reversed() where delivery.generation == generation {
            settle(.basicReject(deliveryTag: delivery.deliveryTag, requeue: true), connection: connection, channel: channel)
        }
        deleteIfUnusedAutoDelete(consumer.queue)
    }

    /// Hands the queue's messages to its consumers with room, in turn.
    mutating func dispatch(_ name: String) {
        expireDue(in: name)
        while let message = queues[name]?.messages.first, let key = nextConsumerWithRoom(name) {
            queues[name]!.messages.removeFirst()
            guard deliver(message, from: name, to: key) else {
                queues[name]!.messages.prepend(message)
                return
            }
        }
    }

    private mutating func nextConsumerWithRoom(_ name: String) -> ConsumerKey? {
        guard let queue = queues[name], !queue.consumers.isEmpty else { return nil }
        for offset in 0..<queue.consumers.count {
            let index = (queue.nextConsumer + offset) % queue.consumers.count
            let key = queue.consumers[index]
            guard let channel = connections[key.connection]?.channels[key.channel], let consumer = channel.consumers[key.tag]
            else { continue }
            if consumer.noAck || channel.prefetch == 0 || consumer.unacked < Int(channel.prefetch) {
                queues[name]!.nextConsumer = index + 1
                return key
            }
        }
        return nil
    }

    /// Pushes one message to a consumer's buffer. Returns `false` when the consumer refused it (its
    /// iteration ended): the message stays in the queue.
    private mutating func deliver(_ message: InMemoryMessage, from name: String, to key: ConsumerKey) -> Bool {
        guard let channel = connections[key.connection]?.channels[key.channel], let consumer = channel.consumers[key.tag],
            let queue = queues[name]
        else { return false }
        var tag: UInt64 = 0
        if !consumer.noAck { tag = track(message, from: name, consumer: key.tag, connection: key.connection, channel: key.channel) }
        let delivery = AMQPDelivery(
            body: message.body, properties: deliveryProperties(message, in: queue), deliveryTag: tag,
            redelivered: message.redelivered, exchange: message.exchange, routingKey: message.routingKey,
            consumerTag: key.tag, queue: name, messageCount: nil, isAutoAcknowledged: consumer.noAck,
            channel: channel.handle, generation: channel.handle.generation)
        switch consumer.stream.push(delivery) {
        case .accepted, .acceptedOverLimit(needsWake: false): break
        case .acceptedNeedsWake, .acceptedOverLimit(needsWake: true):
            _ = consumer.stream.wakeIfDue(at: nil, batching: .disabled, batchLimit: 1)
        case .refused:
            if !consumer.noAck { connections[key.connection]?.channels[key.channel]?.unacked[tag] = nil }
            connections[key.connection]?.channels[key.channel]?.consumers[key.tag]?.unacked -= consumer.noAck ? 0 : 1
            return false
        }
        return true
    }

    private mutating func deliverDirectly(_ body: [UInt8], properties: AMQPProperties, routingKey: String, to key: ConsumerKey) {
        guard let channel = connections[key.connection]?.channels[key.channel], let consumer = channel.consumers[key.tag] else { return }
        let delivery = AMQPDelivery(
            body: body, properties: properties, deliveryTag: 0, redelivered: false, exchange: "", routingKey: routingKey,
            consumerTag: key.tag, queue: Self.directReplyTo, messageCount: nil, isAutoAcknowledged: true,
            channel: channel.handle, generation: channel.handle.generation)
        switch consumer.stream.push(delivery) {
        case .acceptedNeedsWake, .acceptedOverLimit(needsWake: true):
            _ = consumer.stream.wakeIfDue(at: nil, batching: .disabled, batchLimit: 1)
        default: break
        }
    }

    /// Records a delivery that waits for its ack; returns its tag.
    private mutating func track(
        _ message: InMemoryMessage, from queue: String, consumer: String?, connection: Int, channel: UInt16
    ) -> UInt64 {
        let tag = connections[connection]!.channels[channel]!.nextDeliveryTag
        connections[connection]!.channels[channel]!.nextDeliveryTag += 1
        connections[connection]!.channels[channel]!.unacked[tag] = (queue, message, consumer)
        if let consumer { connections[connection]!.channels[channel]!.consumers[consumer]?.unacked += 1 }
        return tag
    }

    /// The properties a delivery carries: a quorum queue counts earlier returns. (RabbitMQ sends
    /// the count from the first return on to a consumer, and always, 0 included, to `basic.get`.)
    private func deliveryProperties(_ message: InMemoryMessage, in queue: InMemoryQueue, byGet: Bool = false) -> AMQPProperties {
        guard queue.isQuorum, message.returns > 0 || byGet else { return message.properties }
        var properties = message.properties
        var headers = properties.headers ?? [:]
        headers["x-delivery-count"] = .int64(Int64(message.returns))
        properties.headers = headers
        return properties
    }

    // MARK: Settling

    /// An ack, nack or reject. An unknown tag is a refusal, as on RabbitMQ. A message a reject
    /// (or a closed channel: `returnedByClose`) gives back counts toward a quorum queue's delivery
    /// limit; one a nack gives back does not, as on RabbitMQ 4.3 (3.x counts both).
    @discardableResult
    mutating func settle(
        _ method: ClientMethod, connection: Int, channel: UInt16, returnedByClose: Bool = false
    ) -> ChannelRefusal? {
        let (tag, multiple, requeue, acked): (UInt64, Bool, Bool, Bool) =
            switch method {
            case .basicAck(let tag, let multiple): (tag, multiple, false, true)
            case .basicNack(let tag, let multiple, let requeue): (tag, multiple, requeue, false)
            case .basicReject(let tag, let requeue): (tag, false, requeue, false)
            default: (0, false, false, true)
            }
        let countsAsReturn: Bool =
            if case .basicReject = method { true } else { returnedByClose }
        guard let unacked = connections[connection]?.channels[channel]?.unacked else { return nil }
        let tags = multiple ? unacked.keys.filter { $0 <= tag }.sorted() : [tag]
        guard multiple || unacked[tag] != nil else {
            return .precondition("unknown delivery tag \(tag)", AMQPMethodID(classID: 60, methodID: acked ? 80 : 90))
        }
        var touched: Set<String> = []
        // Requeued in reverse, each to the front: they keep their order ahead of the rest.
        for tag in (requeue ? tags.reversed() : tags) {
            guard let entry = connections[connection]?.channels[channel]?.unacked.removeValue(forKey: tag) else { continue }
            if let consumer = entry.consumer { connections[connection]?.channels[channel]?.consumers[consumer]?.unacked -= 1 }
            touched.insert(entry.queue)
            if acked { continue }
            if requeue {
                var message = entry.message
                message.redelivered = true
                if countsAsReturn { message.returns += 1 }
                if let limit = queues[entry.queue]?.deliveryLimit, message.returns > limit {
                    // Returned more often than the quorum queue allows: dead-lettered (or dropped).
                    deadLetter(message, from: entry.queue, reason: "delivery_limit")
                    continue
                }
                queues[entry.queue]?.messages.prepend(message)
            } else {
                deadLetter(entry.message, from: entry.queue, reason: "rejected")
            }
        }
        for queue in touched { dispatch(queue) }
        return nil
    }

    /// Every unacknowledged delivery of the channel goes back to its queue (the channel closed).
    mutating func requeueAll(connection: Int, channel: UInt16) {
        guard let unacked = connections[connection]?.channels[channel]?.unacked, !unacked.isEmpty else { return }
        settle(
            .basicNack(deliveryTag: unacked.keys.max()!, multiple: true, requeue: true), connection: connection, channel: channel,
            returnedByClose: true)
    }

    // MARK: Dead-lettering and expiry

    mutating func deadLetter(_ message: InMemoryMessage, from name: String, reason: String) {
        guard let queue = queues[name], case .string(let exchange)? = queue.arguments["x-dead-letter-exchange"] else { return }
        var routingKey = message.routingKey
        if case .string(let key)? = queue.arguments["x-dead-letter-routing-key"] { routingKey = key }
        var dead = message
        dead.properties.expiration = nil
        dead.expiresAt = nil
        dead.redelivered = false
        dead.returns = 0
        var headers = dead.properties.headers ?? [:]
        var deaths: [AMQPFieldValue] = []
        if case .array(let earlier)? = headers["x-death"] { deaths = earlier }
        // One entry per (queue, reason), counted, most recent first: RabbitMQ's x-death.
        if let index = deaths.firstIndex(where: {
            guard case .table(let entry) = $0 else { return false }
            return entry["queue"] == .string(name) && entry["reason"] == .string(reason)
        }), case .table(var entry) = deaths.remove(at: index) {
            entry["count"] = .int64((entry["count"]?.integerValue.map(Int64.init) ?? 0) + 1)
            entry["time"] = .timestamp(Date())
            deaths.insert(.table(entry), at: 0)
        } else {
            deaths.insert(
                .table([
                    "count": .int64(1), "reason": .string(reason), "queue": .string(name), "time": .timestamp(Date()),
                    "exchange": .string(message.exchange), "routing-keys": .array([.string(message.routingKey)]),
                ]), at: 0)
        }
        headers["x-death"] = .array(deaths)
        if headers["x-first-death-queue"] == nil {
            headers["x-first-death-queue"] = .string(name)
            headers["x-first-death-reason"] = .string(reason)
            headers["x-first-death-exchange"] = .string(message.exchange)
        }
        headers["x-last-death-queue"] = .string(name)
        headers["x-last-death-reason"] = .string(reason)
        headers["x-last-death-exchange"] = .string(message.exchange)
        dead.properties.headers = headers
        dead.exchange = exchange
        dead.routingKey = routingKey
        for target in route(exchange: exchange, routingKey: routingKey) { enqueue(dead, in: target) }
    }

    /// Dead-letters the messages whose time has passed, at the head of each queue (as RabbitMQ does).
    mutating func expireDue() {
        for name in queues.keys { expireDue(in: name) }
        for name in queues.keys { dispatch(name) }
    }

    mutating func expireDue(in name: String) {
        let now = self.now
        while let expiresAt = queues[name]?.messages.first?.expiresAt, expiresAt <= now {
            let message = queues[name]!.messages.removeFirst()
            deadLetter(message, from: name, reason: "expired")
        }
    }

    // MARK: Deleting

    mutating func deleteQueue(_ name: String) {
        guard let queue = queues.removeValue(forKey: name) else { return }
        for key in exchanges.keys { exchanges[key]?.bindings.removeAll { $0.destination == .queue(name) } }
        for key in queue.consumers {
            guard let consumer = connections[key.connection]?.channels[key.channel]?.consumers.removeValue(forKey: key.tag) else {
                continue
            }
            consumer.stream.finish(
                AMQPError(code: .consumerCancelled, message: "the broker cancelled consumer \(key.tag) (was its queue deleted?)"))
        }
    }

    mutating func deleteIfUnusedAutoDelete(_ name: String) {
        guard let queue = queues[name], queue.autoDelete, queue.consumers.isEmpty else { return }
        deleteQueue(name)
    }

    // MARK: Channels and connections

    /// Closes a channel: its consumers end (with `error`, or normally), its unacknowledged
    /// deliveries go back.
    mutating func closeChannel(_ id: UInt16, connection: Int, error: AMQPError?) {
        guard let channel = connections[connection]?.channels[id] else { return }
        requeueAll(connection: connection, channel: id)
        for (tag, consumer) in channel.consumers {
            let key = ConsumerKey(connection: connection, channel: id, tag: tag)
            queues[consumer.queue]?.consumers.removeAll { $0 == key }
            consumer.stream.finish(error)
            deleteIfUnusedAutoDelete(consumer.queue)
        }
        if let address = channel.replyAddress { replyAddresses[address] = nil }
        connections[connection]?.channels[id] = nil
        channel.handle.markClosed(error ?? .channelClosedByApplication(id))
    }

    mutating func closeConnection(_ id: Int) {
        guard let connection = connections[id] else { return }
        for channel in connection.channels.keys { closeChannel(channel, connection: id, error: nil) }
        connections[id] = nil
        for (name, queue) in queues where queue.exclusiveOwner == id { deleteQueue(name) }
    }
}
