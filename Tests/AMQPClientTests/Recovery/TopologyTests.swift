import Testing

@testable import AMQPClient

@Suite("Recovery: what the recorded topology keeps and forgets")
struct TopologyTests {
    static let ok = ServerMethod.ok(AMQPMethodID(rawValue: 0))

    static func declareExchange(_ topology: Topology, _ name: String, autoDelete: Bool = false) {
        topology.record(
            .exchangeDeclare(
                name: name, type: "topic", passive: false, durable: true, autoDelete: autoDelete, isInternal: false, arguments: [:]),
            reply: ok)
    }

    static func declareQueue(_ topology: Topology, _ name: String, serverName: String? = nil) {
        topology.record(
            .queueDeclare(name: name, passive: false, durable: true, exclusive: false, autoDelete: false, arguments: [:]),
            reply: .queueDeclareOk(AMQPQueueInfo(name: serverName ?? name, messageCount: 0, consumerCount: 0)))
    }

    static func bind(_ topology: Topology, queue: String, to exchange: String, key: String = "#") {
        topology.record(.queueBind(queue: queue, exchange: exchange, routingKey: key, arguments: [:]), reply: ok)
    }

    @Test("declaring an exchange again replaces its record instead of adding one")
    func redeclare() {
        let topology = Topology()
        Self.declareExchange(topology, "orders")
        Self.declareExchange(topology, "orders", autoDelete: true)
        #expect(topology.exchanges.count == 1)
        #expect(topology.exchanges[0].autoDelete)
    }

    @Test("deleting a queue forgets it and its bindings")
    func deleteQueue() {
        let topology = Topology()
        Self.declareExchange(topology, "orders")
        Self.declareQueue(topology, "payments")
        Self.bind(topology, queue: "payments", to: "orders")
        topology.record(.queueDelete(name: "payments", ifUnused: false, ifEmpty: false), reply: .messageCount(.queueDeleteOk, 0))
        #expect(topology.queues.isEmpty)
        #expect(topology.bindings.isEmpty)
        #expect(topology.exchanges.map(\.name) == ["orders"])
    }

    @Test("deleting an exchange forgets every binding from or to it")
    func deleteExchange() {
        let topology = Topology()
        Self.declareExchange(topology, "orders")
        Self.declareQueue(topology, "payments")
        Self.bind(topology, queue: "payments", to: "orders")
        topology.record(.exchangeDelete(name: "orders", ifUnused: false), reply: Self.ok)
        #expect(topology.exchanges.isEmpty)
        #expect(topology.bindings.isEmpty)
        #expect(topology.queues.count == 1)
    }

    @Test("an auto-delete exchange whose last binding goes is forgotten, as RabbitMQ deletes it")
    func autoDeleteExchange() {
        let topology = Topology()
        Self.declareExchange(topology, "temp", autoDelete: true)
        Self.declareQueue(topology, "q")
        Self.bind(topology, queue: "q", to: "temp", key: "a")
        Self.bind(topology, queue: "q", to: "temp", key: "b")
        topology.record(.queueUnbind(queue: "q", exchange: "temp", routingKey: "a", arguments: [:]), reply: Self.ok)
        #expect(topology.exchanges.count == 1, "one binding is left")
        topology.record(.queueUnbind(queue: "q", exchange: "temp", routingKey: "b", arguments: [:]), reply: Self.ok)
        #expect(topology.exchanges.isEmpty)
    }

    @Test("a renamed server-named queue takes its bindings along; it is declared again with an empty name")
    func rename() {
        let topology = Topology()
        Self.declareExchange(topology, "orders")
        Self.declareQueue(topology, "", serverName: "amq.gen-1")
        Self.bind(topology, queue: "amq.gen-1", to: "orders")
        topology.rename(queue: "amq.gen-1", to: "amq.gen-2")
        #expect(topology.queues.map(\.name) == ["amq.gen-2"])
        #expect(topology.bindings.map(\.destination) == ["amq.gen-2"])
        if case .queueDeclare(let name, _, _, _, _, _) = topology.queues[0].declaration { #expect(name == "") }
    }

    @Test("which methods change the record: declarations that are not passive, deletions, binds and unbinds")
    func changes() {
        #expect(Topology.changes(.queueDeclare(name: "q", passive: false, durable: true, exclusive: false, autoDelete: false, arguments: [:])))
        #expect(!Topology.changes(.queueDeclare(name: "q", passive: true, durable: true, exclusive: false, autoDelete: false, arguments: [:])))
        #expect(Topology.changes(.exchangeUnbind(destination: "a", source: "b", routingKey: "", arguments: [:])))
        #expect(!Topology.changes(.basicQos(prefetchCount: 1, global: false)))
    }
}
