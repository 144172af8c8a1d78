import Testing

@testable import AMQPClient

@Suite("Recovery: backoff and recorded topology")
struct RecoveryLogicTests {
    typealias Recovery = AMQPConnection.Configuration.Recovery

    @Test("the backoff doubles from the initial delay, is capped, and is jittered into its upper half")
    func backoff() {
        let recovery = Recovery(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        for _ in 0..<100 {
            let first = recovery.delay(beforeAttempt: 1)
            #expect(first >= .milliseconds(50) && first <= .milliseconds(100))
            let third = recovery.delay(beforeAttempt: 3)
            #expect(third >= .milliseconds(200) && third <= .milliseconds(400))
            let late = recovery.delay(beforeAttempt: 1_000)
            #expect(late >= .milliseconds(500) && late <= .seconds(1))
        }
        let samples = Set((0..<50).map { _ in recovery.delay(beforeAttempt: 2) })
        #expect(samples.count > 1, "no jitter")
    }

    @Test("endpoints: host and port first, then the alternates in order")
    func endpoints() {
        var configuration = AMQPConnection.Configuration(host: "rabbit-1", port: 5672)
        configuration.alternateEndpoints = [.init(host: "rabbit-2"), .init(host: "::1", port: 5673)]
        #expect(configuration.endpoints.map(\.description) == ["rabbit-1:5672", "rabbit-2:5672", "[::1]:5673"])
    }

    @Test("declarations are recorded once confirmed; passive ones are not; deletions forget what depends on them")
    func topologyRecording() {
        let topology = Topology()
        topology.record(
            .exchangeDeclare(
                name: "orders", type: "fanout", passive: false, durable: true, autoDelete: false, isInternal: false,
                arguments: [:]),
            reply: .ok(AMQPMethodID(rawValue: 0)))
        topology.record(
            .exchangeDeclare(
                name: "amq.topic", type: "topic", passive: true, durable: true, autoDelete: false, isInternal: false,
                arguments: [:]),
            reply: .ok(AMQPMethodID(rawValue: 0)))
        topology.record(
            .queueDeclare(name: "payments", passive: false, durable: true, exclusive: false, autoDelete: false, arguments: [:]),
            reply: .queueDeclareOk(AMQPQueueInfo(name: "payments", messageCount: 0, consumerCount: 0)))
        topology.record(
            .queueDeclare(name: "", passive: false, durable: false, exclusive: true, autoDelete: true, arguments: [:]),
            reply: .queueDeclareOk(AMQPQueueInfo(name: "amq.gen-1", messageCount: 0, consumerCount: 0)))
        topology.record(.queueBind(queue: "payments", exchange: "orders", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))
        topology.record(.queueBind(queue: "amq.gen-1", exchange: "orders", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))
        topology.record(.queueBind(queue: "payments", exchange: "orders", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))

        #expect(topology.exchanges.map(\.name) == ["orders"])
        #expect(topology.queues.map(\.name) == ["payments", "amq.gen-1"])
        #expect(topology.queues.map(\.isServerNamed) == [false, true])
        #expect(topology.bindings.count == 2)

        // A server-named queue is declared again with an empty name; its bindings follow the new one.
        if case .queueDeclare(let name, _, _, _, _, _) = topology.queues[1].declaration { #expect(name == "") }
        topology.rename(queue: "amq.gen-1", to: "amq.gen-2")
        #expect(topology.queue(named: "amq.gen-2") != nil)
        #expect(topology.bindings.map(\.destination).sorted() == ["amq.gen-2", "payments"])

        topology.record(.queueUnbind(queue: "amq.gen-2", exchange: "orders", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))
        #expect(topology.bindings.map(\.destination) == ["payments"])
        topology.record(.exchangeDelete(name: "orders", ifUnused: false), reply: .ok(AMQPMethodID(rawValue: 0)))
        #expect(topology.exchanges.isEmpty)
        #expect(topology.bindings.isEmpty)
        topology.record(.queueDelete(name: "payments", ifUnused: false, ifEmpty: false), reply: .messageCount(.queueDeleteOk, 0))
        #expect(topology.queues.map(\.name) == ["amq.gen-2"])
    }

    @Test("an auto-delete exchange is forgotten when its last binding as a source goes, as RabbitMQ deletes it")
    func autoDeleteExchanges() {
        let topology = Topology()
        func declareExchange(_ name: String, autoDelete: Bool) {
            topology.record(
                .exchangeDeclare(
                    name: name, type: "fanout", passive: false, durable: false, autoDelete: autoDelete,
                    isInternal: false, arguments: [:]),
                reply: .ok(AMQPMethodID(rawValue: 0)))
        }
        declareExchange("events", autoDelete: true)
        declareExchange("orders", autoDelete: true)
        declareExchange("audit", autoDelete: false)
        for queue in ["payments", "inventory"] {
            topology.record(
                .queueDeclare(name: queue, passive: false, durable: true, exclusive: false, autoDelete: false, arguments: [:]),
                reply: .queueDeclareOk(AMQPQueueInfo(name: queue, messageCount: 0, consumerCount: 0)))
        }
        topology.record(.exchangeBind(destination: "orders", source: "events", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))
        topology.record(.queueBind(queue: "payments", exchange: "orders", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))
        topology.record(.queueBind(queue: "inventory", exchange: "orders", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))
        topology.record(.queueBind(queue: "inventory", exchange: "audit", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))

        // One of two bindings goes: "orders" stays.
        topology.record(.queueUnbind(queue: "payments", exchange: "orders", routingKey: "", arguments: [:]), reply: .ok(AMQPMethodID(rawValue: 0)))
        #expect(topology.exchanges.map(\.name) == ["events", "orders", "audit"])
        // Its last binding goes with the queue: "orders" goes, and with it the binding from
        // "events", its last, so "events" goes too. "audit" is not auto-delete.
        topology.record(.queueDelete(name: "inventory", ifUnused: false, ifEmpty: false), reply: .messageCount(.queueDeleteOk, 0))
        #expect(topology.exchanges.map(\.name) == ["audit"])
        #expect(topology.bindings.isEmpty)
    }
}
