import Testing

@testable import AMQPClient

/// What a channel decides about what the broker sends it, without a broker: the twins of the
/// consumer-cancel, unsolicited-reply, late-delivery and return integration tests.
@Suite("Channel: what the broker sends an open channel")
struct ChannelInboundTests {
    static func channel(id: UInt16 = 1, keeps: Bool = false) throws -> ChannelIO {
        let core = try ConnectionCore(configuration: .init(), logger: .init(label: "test"))
        return ChannelIO(handle: AMQPChannel(core: core, ref: ChannelRef(id: id, epoch: 1)), keepsUnconfirmedMessages: keeps)
    }

    static func consumer(_ tag: String, on channel: ChannelIO, noAck: Bool = false, queue: String = "q") -> ConsumerStream {
        let stream = ConsumerStream(consumerTag: tag, queue: queue, noAck: noAck) { _, _ in }
        channel.addConsumer(
            stream, spec: ConsumerRecord.Spec(queue: queue, noAck: noAck, exclusive: false, arguments: [:], order: 1))
        return stream
    }

    static func message(_ kind: ContentAssembly.Kind, tag: UInt64 = 1) -> ContentAssembly.Completed {
        ContentAssembly.Completed(kind: kind, deliveryTag: tag, redelivered: false, exchange: "orders", routingKey: "placed")
    }

    static func isViolation(_ inbound: ChannelIO.Inbound, mentioning text: String) -> Bool {
        if case .violation(let violation) = inbound { return violation.description.contains(text) }
        return false
    }

    @Test("basic.deliver starts a message; a second one before the first is whole breaks the protocol")
    func deliverStartsContent() throws {
        let channel = try Self.channel()
        let deliver = ServerMethod.deliver(consumerTag: "c", deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q")
        guard case .handled = channel.receive(deliver) else {
            Issue.record("the first deliver was not taken")
            return
        }
        #expect(Self.isViolation(channel.receive(deliver), mentioning: "before the previous message was whole"))
    }

    @Test("the broker cancels a consumer: its sequence ends with consumerCancelled, and cancel-ok answers unless no-wait")
    func brokerCancels() async throws {
        let channel = try Self.channel()
        let stream = Self.consumer("c", on: channel)
        guard case .send(.basicCancelOk(let tag)) = channel.receive(.cancel(consumerTag: "c", noWait: false)) else {
            Issue.record("no cancel-ok")
            return
        }
        #expect(tag == "c")
        #expect(channel.consumers["c"] == nil)
        await #expect(throws: AMQPError.self) { try await stream.next() }
        _ = Self.consumer("d", on: channel)
        guard case .handled = channel.receive(.cancel(consumerTag: "d", noWait: true)) else {
            Issue.record("a no-wait cancel is answered")
            return
        }
    }

    @Test("cancel-ok with no cancel waiting is a reply to nothing (505), not the end of a consumer")
    func unsolicitedCancelOk() throws {
        let channel = try Self.channel()
        _ = Self.consumer("c", on: channel)
        #expect(Self.isViolation(channel.receive(.cancelOk(consumerTag: "c")), mentioning: "answers no request"))
        #expect(channel.consumers["c"] != nil, "the consumer goes on")
    }

    @Test("cancel-ok for the application's cancel ends the consumer normally and resolves the cancel")
    func cancelOk() async throws {
        let channel = try Self.channel()
        let stream = Self.consumer("c", on: channel, queue: "auto")
        var resolved = false
        channel.pendingReplies.append(PendingReply(replies: [.basicCancelOk]) { _ in resolved = true })
        guard case .consumerStopped(let queue) = channel.receive(.cancelOk(consumerTag: "c")) else {
            Issue.record("the cancel did not complete")
            return
        }
        #expect(queue == "auto")
        #expect(resolved)
        #expect(try await stream.next() == nil)
    }

    @Test("get-ok with no basic.get waiting is a reply to nothing")
    func unsolicitedGetOk() throws {
        let channel = try Self.channel()
        let getOk = ServerMethod.getOk(deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q", messageCount: 0)
        #expect(Self.isViolation(channel.receive(getOk), mentioning: "60.71"))
    }

    @Test("a reply that answers a request resolves it; one that answers none is a violation; channel.flow is ignored")
    func replies() throws {
        let channel = try Self.channel()
        var answered = false
        channel.pendingReplies.append(PendingReply(replies: [.basicQosOk]) { _ in answered = true })
        guard case .handled = channel.receive(.ok(.basicQosOk)) else {
            Issue.record("qos-ok not taken")
            return
        }
        #expect(answered)
        #expect(Self.isViolation(channel.receive(.ok(.basicQosOk)), mentioning: "60.11"))
        guard case .ignored = channel.receive(.ok(.channelFlow)) else {
            Issue.record("channel.flow is not a reply")
            return
        }
    }

    @Test("the broker closes the channel: the lifecycle decides (close-ok, release, end consumers)")
    func brokerCloses() throws {
        let channel = try Self.channel()
        guard case .lifecycle(let actions) = channel.receive(.channelClose(replyCode: 404, replyText: "NOT_FOUND", classID: 50, methodID: 10))
        else {
            Issue.record("not a lifecycle event")
            return
        }
        #expect(actions.first == .sendCloseOk)
        #expect(actions.contains(.release))
    }

    @Test("acks and nacks report how many publishes they resolved")
    func confirms() throws {
        let channel = try Self.channel()
        channel.confirms.isSelected = true
        for _ in 0..<3 {
            channel.confirms.published(
                PublishRequest(exchange: "", routingKey: "q", mandatory: false, properties: .init(), body: [], confirm: nil))
        }
        guard case .confirmed(2, true) = channel.receive(.ack(deliveryTag: 2, multiple: true)) else {
            Issue.record("multiple ack")
            return
        }
        guard case .confirmed(1, false) = channel.receive(.nack(deliveryTag: 3, multiple: false, requeue: false)) else {
            Issue.record("nack")
            return
        }
    }

    // MARK: Whole messages

    @Test("a delivery goes to its consumer's buffer, and is counted unsettled for a manual-ack consumer")
    func deliveryPushed() throws {
        let channel = try Self.channel()
        let stream = Self.consumer("c", on: channel)
        guard case .pushed(let target, .accepted, let queue) = channel.route(Self.message(.delivery(consumerTag: "c")), connectionClosing: false)
        else {
            Issue.record("not pushed")
            return
        }
        #expect(target === stream)
        #expect(queue == "q")
        #expect(channel.settlements.unsettledCount == 1)
    }

    @Test("a late delivery to a manual-ack consumer cancelled lately is given back; not while the connection closes")
    func lateDeliveryRequeued() throws {
        let channel = try Self.channel()
        _ = Self.consumer("c", on: channel)
        channel.removeConsumer("c")
        guard case .requeue(7) = channel.route(Self.message(.delivery(consumerTag: "c"), tag: 7), connectionClosing: false) else {
            Issue.record("not requeued")
            return
        }
        #expect(channel.settlements.unsettledCount == 1, "tracked, so the reject keeps acks in order")
        guard case .unknownConsumer("c") = channel.route(Self.message(.delivery(consumerTag: "c"), tag: 8), connectionClosing: true)
        else {
            Issue.record("given back to a closing connection")
            return
        }
    }

    @Test("a delivery for a consumer never known, or an auto-ack one cancelled, is dropped")
    func unknownConsumer() throws {
        let channel = try Self.channel()
        _ = Self.consumer("auto", on: channel, noAck: true)
        channel.removeConsumer("auto")
        for tag in ["auto", "stranger"] {
            guard case .unknownConsumer(tag) = channel.route(Self.message(.delivery(consumerTag: tag)), connectionClosing: false) else {
                Issue.record("\(tag) not dropped")
                return
            }
        }
    }

    @Test("a consumer whose iteration ended refuses the delivery, and it goes straight back to the broker")
    func refusedDelivery() throws {
        let channel = try Self.channel()
        let stream = Self.consumer("c", on: channel)
        _ = stream.terminate()
        guard case .requeue(1) = channel.route(Self.message(.delivery(consumerTag: "c")), connectionClosing: false) else {
            Issue.record("not given back")
            return
        }
    }

    @Test("get-ok's message answers the oldest basic.get, tracked for settling only when it asked for manual ack")
    func getAnswered() throws {
        let channel = try Self.channel()
        var got: AMQPDelivery?
        var request = PendingReply(replies: [.basicGetOk, .basicGetEmpty]) { result in
            if case .success(.gotDelivery(let delivery)) = result { got = delivery }
        }
        request.tracksDelivery = true
        channel.pendingReplies.append(request)
        guard case .answeredGet = channel.route(Self.message(.get(messageCount: 4), tag: 3), connectionClosing: false) else {
            Issue.record("not answered")
            return
        }
        #expect(got?.deliveryTag == 3)
        #expect(got?.messageCount == 4)
        #expect(got?.isAutoAcknowledged == false)
        #expect(channel.settlements.unsettledCount == 1)
    }

    @Test("a returned message marks its mandatory publish, or is reported as unmatched")
    func returned() throws {
        let channel = try Self.channel()
        channel.confirms.isSelected = true
        channel.confirms.published(
            PublishRequest(
                exchange: "orders", routingKey: "placed", mandatory: true, properties: .init(), body: [], confirm: ConfirmTracker()))
        let kind = ContentAssembly.Kind.returned(replyCode: 312, replyText: "NO_ROUTE")
        guard case .returned(let error, "orders", "placed", true) = channel.route(Self.message(kind, tag: 0), connectionClosing: false)
        else {
            Issue.record("not matched")
            return
        }
        #expect(error.code == .messageReturned && error.replyCode == 312)
        guard case .returned(_, _, _, false) = channel.route(Self.message(kind, tag: 0), connectionClosing: false) else {
            Issue.record("a second return matched the same publish")
            return
        }
    }
}

@Suite("Channel: what a recovery keeps and forgets")
struct ChannelAcrossRecoveryTests {
    @Test("a settlement of a delivery from before the recovery is refused: the broker requeued it, its tag is reused")
    func staleSettlement() throws {
        let channel = try ChannelInboundTests.channel()
        let before = channel.generation
        #expect(channel.acceptsSettlement(fromGeneration: before))
        channel.resetForNewConnection(lost: AMQPError(code: .connectionLost, message: "cut"))
        #expect(!channel.acceptsSettlement(fromGeneration: before))
        #expect(channel.acceptsSettlement(fromGeneration: channel.generation))
    }

    @Test("consumers the application stopped, or whose iteration ended, are not restored; the others are, in start order")
    func consumersToRestore() throws {
        let channel = try ChannelInboundTests.channel()
        for (order, tag) in ["b", "a", "stopped", "dropped"].enumerated() {
            let stream = ConsumerStream(consumerTag: tag, queue: "q", noAck: false) { _, _ in }
            channel.addConsumer(
                stream, spec: ConsumerRecord.Spec(queue: "q", noAck: false, exclusive: false, arguments: [:], order: UInt64(order)))
        }
        channel.stopRestoring("stopped")
        _ = channel.consumers["dropped"]?.stream.terminate()
        channel.resetForNewConnection(lost: AMQPError(code: .connectionLost, message: "cut"))
        #expect(channel.consumersToRestore().map(\.tag) == ["b", "a"])
        #expect(channel.consumers.keys.sorted() == ["a", "b"])
    }

    @Test("a loss fails pending calls with connectionLost and forgets half-assembled messages and held acks")
    func resetForgets() throws {
        let channel = try ChannelInboundTests.channel()
        var failure: AMQPError?
        channel.pendingReplies.append(PendingReply(replies: [.queueDeclareOk]) { if case .failure(let error) = $0 { failure = error } })
        try channel.content.start(.delivery(consumerTag: "c"), deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q")
        channel.settlements.delivered(1)
        channel.resetForNewConnection(lost: AMQPError(code: .connectionLost, message: "cut"))
        #expect(failure?.code == .connectionLost)
        #expect(channel.settlements.unsettledCount == 0)
        // A new message may start: the old half is gone.
        try channel.content.start(.delivery(consumerTag: "c"), deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q")
    }
}

@Suite("Consumer: what a buffered delivery costs")
struct DeliveryCostTests {
    @Test("a delivery counts its body's buffer, its decoded properties and a fixed share: wide headers cannot hide")
    func cost() throws {
        let channel = try ConsumerStreamTests.detachedChannel()
        let plain = AMQPDelivery(
            body: [UInt8](repeating: 0, count: 1_000), properties: .init(), deliveryTag: 1, redelivered: false, exchange: "",
            routingKey: "q", consumerTag: "t", messageCount: nil, isAutoAcknowledged: false, channel: channel, generation: 0)
        let wide = AMQPDelivery(
            body: [], properties: .init(), deliveryTag: 2, redelivered: false, exchange: "", routingKey: "q", consumerTag: "t",
            messageCount: nil, isAutoAcknowledged: false, propertiesFootprint: 9_000 * 64, channel: channel, generation: 0)
        #expect(ConsumerStream.cost(plain) >= 1_000 + 256)
        #expect(ConsumerStream.cost(wide) == 9_000 * 64 + 256)
    }
}
