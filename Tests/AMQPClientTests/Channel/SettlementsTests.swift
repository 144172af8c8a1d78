import Testing

@testable import AMQPClient

@Suite("Channel: merging acks and ordering settlements")
struct SettlementsTests {
    @Test("in-order acks are held and merged into one multiple ack")
    func inOrderAcksMerge() {
        var settlements = Settlements()
        for tag in 1...3 { settlements.delivered(UInt64(tag)) }
        let action1 = settlements.settle(.basicAck(deliveryTag: 1, multiple: false))
        #expect(action1 == .hold(first: true))
        let action2 = settlements.settle(.basicAck(deliveryTag: 2, multiple: false))
        #expect(action2 == .hold(first: false))
        let action3 = settlements.settle(.basicAck(deliveryTag: 3, multiple: false))
        #expect(action3 == .hold(first: false))
        let action4 = settlements.takeHeldAck()
        #expect(action4 == .basicAck(deliveryTag: 3, multiple: true))
        let action5 = settlements.takeHeldAck()
        #expect(action5 == nil)
        #expect(settlements.unsettledCount == 0)
    }

    @Test("an ack that leaves an earlier delivery unsettled goes out on its own, and the gap closes later")
    func outOfOrderAck() {
        var settlements = Settlements()
        for tag in 1...3 { settlements.delivered(UInt64(tag)) }
        let action6 = settlements.settle(.basicAck(deliveryTag: 2, multiple: false))
        #expect(action6 == .send(.basicAck(deliveryTag: 2, multiple: false)))
        // Settled out of order: it still counts until the deliveries before it are settled.
        // Acking 1 now settles 1 and 2: everything up to 1 is settled, so it may be held.
        let action7 = settlements.settle(.basicAck(deliveryTag: 1, multiple: false))
        #expect(action7 == .hold(first: true))
        #expect(settlements.unsettledCount == 1)
        let action8 = settlements.takeHeldAck()
        #expect(action8 == .basicAck(deliveryTag: 1, multiple: true))
    }

    @Test("a nack or reject sends the held ack first, so a multiple nack never reaches acked deliveries")
    func nackAfterHeldAck() {
        var settlements = Settlements()
        for tag in 1...4 { settlements.delivered(UInt64(tag)) }
        let action9 = settlements.settle(.basicAck(deliveryTag: 1, multiple: false))
        #expect(action9 == .hold(first: true))
        #expect(
            settlements.settle(.basicNack(deliveryTag: 2, multiple: true, requeue: true))
                == .sendHeldAckThen(
                    .basicAck(deliveryTag: 1, multiple: true), .basicNack(deliveryTag: 2, multiple: true, requeue: true)))
        let action10 = settlements.takeHeldAck()
        #expect(action10 == nil)
        #expect(
            settlements.settle(.basicReject(deliveryTag: 4, requeue: false))
                == .send(.basicReject(deliveryTag: 4, requeue: false)))
        #expect(settlements.unsettledCount == 2)  // 3, and 4 settled out of order
        let action11 = settlements.settle(.basicAck(deliveryTag: 3, multiple: false))
        #expect(action11 == .hold(first: true))
        #expect(settlements.unsettledCount == 0)
    }

    @Test("a multiple ack settles everything up to its tag")
    func multipleAck() {
        var settlements = Settlements()
        for tag in 1...5 { settlements.delivered(UInt64(tag)) }
        let action12 = settlements.settle(.basicAck(deliveryTag: 4, multiple: true))
        #expect(action12 == .hold(first: true))
        #expect(settlements.unsettledCount == 1)
        let action13 = settlements.takeHeldAck()
        #expect(action13 == .basicAck(deliveryTag: 4, multiple: true))
    }
}
