import DequeModule
import Testing

@testable import AMQPClient

@Suite("I/O: holding commands while the broker blocks the connection")
struct HeldCommandsTests {
    static func publish(on id: UInt16, size: Int = 100) -> Command {
        .publish(
            ChannelRef(id: id, epoch: 1),
            PublishRequest(
                exchange: "", routingKey: "q", mandatory: false, properties: AMQPProperties(),
                body: [UInt8](repeating: 0, count: size), confirm: nil))
    }

    static func stopConsumer(on id: UInt16) -> Command {
        let stream = ConsumerStream(consumerTag: "c", queue: "q", noAck: false) { _, _ in }
        return .stopConsumer(ChannelRef(id: id, epoch: 1), stream, requeue: [], nil)
    }

    @Test("publishes are held, and what follows a held publish on its channel; settlements and other channels are not")
    func whatIsHeld() {
        var held = HeldCommands()
        #expect(held.mustHold(Self.publish(on: 1)))
        #expect(!held.mustHold(Self.stopConsumer(on: 1)))
        held.hold(Self.publish(on: 1, size: 100))
        #expect(held.mustHold(Self.stopConsumer(on: 1)))
        #expect(!held.mustHold(Self.stopConsumer(on: 2)))
        #expect(!held.mustHold(.settle(ChannelRef(id: 1, epoch: 1), generation: 0, .basicAck(deliveryTag: 1, multiple: false))))
        #expect(!held.mustHold(.closeConnection))
        #expect(held.publishBytes == MailboxState.publishCost(PublishRequest(
            exchange: "", routingKey: "q", mandatory: false, properties: AMQPProperties(),
            body: [UInt8](repeating: 0, count: 100), confirm: nil)))
    }

    @Test("released in their original order, and nothing stays held")
    func releaseInOrder() {
        var held = HeldCommands()
        held.hold(Self.publish(on: 1, size: 1))
        held.hold(Self.stopConsumer(on: 1))
        held.hold(Self.publish(on: 2, size: 2))
        let released = held.takeAll()
        let kinds = released.map { command -> String in
            switch command {
            case .publish(let ref, let request): "publish \(ref.id) \(request.body.count)"
            case .stopConsumer(let ref, _, _, _): "stop \(ref.id)"
            default: "other"
            }
        }
        #expect(kinds == ["publish 1 1", "stop 1", "publish 2 2"])
        #expect(held.isEmpty)
        #expect(held.publishBytes == 0)
        #expect(!held.mustHold(Self.stopConsumer(on: 1)))
    }
}
