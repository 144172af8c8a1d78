import Testing

@testable import AMQPClient

@Suite("Channel: settlements across batches and recoveries")
struct SettlementOrderTests {
    @Test("a reject after held acks sends the merged ack first, then the reject, so it never reaches acked deliveries")
    func rejectAfterHeldAcks() {
        var settlements = Settlements()
        for tag in 1...3 { settlements.delivered(UInt64(tag)) }
        _ = settlements.settle(.basicAck(deliveryTag: 1, multiple: false))
        _ = settlements.settle(.basicAck(deliveryTag: 2, multiple: false))
        let action = settlements.settle(.basicReject(deliveryTag: 3, requeue: true))
        #expect(action == .sendHeldAckThen(.basicAck(deliveryTag: 2, multiple: true), .basicReject(deliveryTag: 3, requeue: true)))
        #expect(settlements.unsettledCount == 0)
    }

    @Test("a reject with nothing held goes out alone")
    func rejectAlone() {
        var settlements = Settlements()
        settlements.delivered(1)
        #expect(settlements.settle(.basicReject(deliveryTag: 1, requeue: false)) == .send(.basicReject(deliveryTag: 1, requeue: false)))
    }

    @Test("a multiple nack settles every delivery up to its tag; a later ack of the next one can be held again")
    func multipleNack() {
        var settlements = Settlements()
        for tag in 1...4 { settlements.delivered(UInt64(tag)) }
        #expect(
            settlements.settle(.basicNack(deliveryTag: 3, multiple: true, requeue: true))
                == .send(.basicNack(deliveryTag: 3, multiple: true, requeue: true)))
        #expect(settlements.unsettledCount == 1)
        #expect(settlements.settle(.basicAck(deliveryTag: 4, multiple: false)) == .hold(first: true))
        #expect(settlements.takeHeldAck() == .basicAck(deliveryTag: 4, multiple: true))
    }

    @Test("a fresh channel state after a recovery holds nothing from the old connection")
    func freshAfterRecovery() {
        var settlements = Settlements()
        settlements.delivered(1)
        _ = settlements.settle(.basicAck(deliveryTag: 1, multiple: false))
        settlements = Settlements()  // what ChannelIO.resetForNewConnection does
        #expect(settlements.takeHeldAck() == nil)
        #expect(settlements.unsettledCount == 0)
    }
}

@Suite("I/O: blocked and unblocked, with publishes held")
struct BlockedConnectionTests {
    static func publish(on id: UInt16, key: String) -> Command {
        .publish(
            ChannelRef(id: id, epoch: 1),
            PublishRequest(exchange: "", routingKey: key, mandatory: false, properties: AMQPProperties(), body: [1, 2], confirm: nil))
    }

    static func call(on id: UInt16) -> Command {
        .call(ChannelRef(id: id, epoch: 1), .basicQos(prefetchCount: 1, global: false), ReplyContinuation())
    }

    @Test("a call on a channel with a held publish waits behind it; a call on another channel does not")
    func callsBehindPublishes() {
        var held = HeldCommands()
        held.hold(Self.publish(on: 1, key: "a"))
        #expect(held.mustHold(Self.call(on: 1)))
        #expect(!held.mustHold(Self.call(on: 2)))
    }

    @Test("opening a channel and closing the connection are never held")
    func neverHeld() {
        var held = HeldCommands()
        held.hold(Self.publish(on: 1, key: "a"))
        #expect(!held.mustHold(.closeConnection))
    }

    @Test("held publish bytes add up, and are given back when released")
    func bytesCounted() {
        var held = HeldCommands()
        held.hold(Self.publish(on: 1, key: "a"))
        let one = held.publishBytes
        held.hold(Self.publish(on: 2, key: "b"))
        #expect(held.publishBytes == 2 * one)
        #expect(held.takeAll().count == 2)
        #expect(held.publishBytes == 0)
    }
}

@Suite("Recovery: the backoff's arithmetic")
struct BackoffTests {
    typealias Recovery = AMQPConnection.Configuration.Recovery

    @Test("the jitter factor is clamped to half or all of the delay")
    func jitterClamped() {
        let recovery = Recovery(initialDelay: .seconds(2), maximumDelay: .seconds(60))
        #expect(recovery.delay(beforeAttempt: 1, jitter: 0.5) == .seconds(1))
        #expect(recovery.delay(beforeAttempt: 1, jitter: 0.1) == .seconds(1))
        #expect(recovery.delay(beforeAttempt: 1, jitter: 3) == .seconds(2))
    }

    @Test("a huge attempt number neither overflows nor goes past the maximum delay")
    func noOverflow() {
        let recovery = Recovery(initialDelay: .milliseconds(500), maximumDelay: .seconds(30))
        #expect(recovery.delay(beforeAttempt: 10_000, jitter: 1) == .seconds(30))
        #expect(recovery.delay(beforeAttempt: 0, jitter: 1) == .milliseconds(500), "attempt 0 counts as the first")
    }
}
