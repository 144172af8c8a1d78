import Testing

@testable import AMQPClient

@Suite("Recovery: the plan of one attempt")
struct RecoveryPlanTests {
    static let declarations: [RecoveryPlan.Declaration] = [
        .init(kind: .exchange, index: 0, reply: .exchangeDeclareOk, description: "exchange"),
        .init(kind: .binding, index: 0, reply: .exchangeBindOk, description: "binding"),
    ]

    @Test("channels reopen in number order, each with per-consumer prefetch before the channel's, then confirm mode")
    func channelsFirst() {
        let plan = RecoveryPlan(channels: [
            .init(id: 5, confirmMode: true),
            .init(id: 2, prefetch: [.init(count: 50, global: true), .init(count: 10, global: false)]),
        ])
        #expect(
            plan.steps == [
                .openChannel(2), .setPrefetch(channel: 2, .init(count: 10, global: false)),
                .setPrefetch(channel: 2, .init(count: 50, global: true)), .openChannel(5), .selectConfirms(channel: 5),
            ])
    }

    @Test("RabbitMQ's order: channels, then exchanges, queues and bindings on their own channel, then consumers, then republishing")
    func order() {
        let plan = RecoveryPlan(
            channels: [.init(id: 1, consumerTags: ["a", "b"], republishes: true), .init(id: 3, consumerTags: ["c"])],
            topologyChannel: 2, declarations: Self.declarations)
        #expect(
            plan.steps == [
                .openChannel(1), .openChannel(3), .openTopologyChannel(2), .declare(Self.declarations[0], on: 2),
                .declare(Self.declarations[1], on: 2), .closeTopologyChannel(2), .consume(channel: 1, consumerTag: "a"),
                .consume(channel: 1, consumerTag: "b"), .consume(channel: 3, consumerTag: "c"), .republish(channel: 1),
            ])
    }

    @Test("no declarations, no topology channel; no free number, no declarations")
    func noTopology() {
        let empty = RecoveryPlan(channels: [.init(id: 1)], topologyChannel: 2, declarations: [])
        #expect(empty.topologyChannel == nil)
        #expect(empty.steps == [.openChannel(1)])
        let noNumber = RecoveryPlan(channels: [.init(id: 1)], topologyChannel: nil, declarations: Self.declarations)
        #expect(noNumber.declarations.isEmpty)
        #expect(noNumber.steps == [.openChannel(1)])
    }

    @Test("each step waits for the reply that completes it; a republish waits for none")
    func replies() {
        #expect(RecoveryStep.openChannel(1).reply == .channelOpenOk)
        #expect(RecoveryStep.openTopologyChannel(1).reply == .channelOpenOk)
        #expect(RecoveryStep.setPrefetch(channel: 1, .init(count: 1, global: false)).reply == .basicQosOk)
        #expect(RecoveryStep.selectConfirms(channel: 1).reply == .confirmSelectOk)
        #expect(RecoveryStep.declare(Self.declarations[1], on: 2).reply == .exchangeBindOk)
        #expect(RecoveryStep.closeTopologyChannel(2).reply == .channelCloseOk)
        #expect(RecoveryStep.consume(channel: 1, consumerTag: "c").reply == .basicConsumeOk)
        #expect(RecoveryStep.republish(channel: 1).reply == nil)
    }

    @Test("steps know their channel, and whether it is an application channel or the topology's")
    func channels() {
        #expect(RecoveryStep.consume(channel: 4, consumerTag: "c").channel == 4)
        #expect(RecoveryStep.declare(Self.declarations[0], on: 9).channel == 9)
        #expect(RecoveryStep.republish(channel: 4).isOnApplicationChannel)
        #expect(!RecoveryStep.openTopologyChannel(9).isOnApplicationChannel)
        #expect(!RecoveryStep.declare(Self.declarations[0], on: 9).isOnApplicationChannel)
        #expect(!RecoveryStep.closeTopologyChannel(9).isOnApplicationChannel)
    }

    @Test("reopening a channel after a refused consumer repeats its prefetch and confirm mode, not its consumers")
    func reopening() {
        let channel = RecoveryPlan.Channel(
            id: 7, prefetch: [.init(count: 3, global: false)], confirmMode: true, consumerTags: ["x"], republishes: true)
        #expect(
            RecoveryStep.reopening(channel) == [
                .openChannel(7), .setPrefetch(channel: 7, .init(count: 3, global: false)), .selectConfirms(channel: 7),
            ])
    }
}
