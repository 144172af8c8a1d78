/// The exchanges, queues and bindings the application declared through one connection,
/// recorded when the broker confirmed them, so that recovery can declare them again in
/// RabbitMQ's order: exchanges, queues, bindings. Entities the application deleted are
/// forgotten. Touched only by the I/O thread.
final class Topology {
    struct Exchange {
        let name: String
        let type: String
        let durable: Bool
        let autoDelete: Bool
        let isInternal: Bool
        let arguments: AMQPFieldTable

        var declaration: ClientMethod {
            .exchangeDeclare(
                name: name, type: type, passive: false, durable: durable, autoDelete: autoDelete,
                isInternal: isInternal, arguments: arguments)
        }
    }

    struct Queue {
        var name: String
        /// Declared with an empty name: the broker picks a new name on every declaration.
        let isServerNamed: Bool
        let durable: Bool
        let exclusive: Bool
        let autoDelete: Bool
        let arguments: AMQPFieldTable

        var declaration: ClientMethod {
            .queueDeclare(
                name: isServerNamed ? "" : name, passive: false, durable: durable, exclusive: exclusive,
                autoDelete: autoDelete, arguments: arguments)
        }
    }

    struct Binding: Hashable {
        enum Destination: Hashable { case queue, exchange }
        let destinationKind: Destination
        var destination: String
        let source: String
        let routingKey: String
        let arguments: AMQPFieldTable

        var declaration: ClientMethod {
            switch destinationKind {
            case .queue:
                .queueBind(queue: destination, exchange: source, routingKey: routingKey, arguments: arguments)
            case .exchange:
                .exchangeBind(destination: destination, source: source, routingKey: routingKey, arguments: arguments)
            }
        }
    }

    private(set) var exchanges: [Exchange] = []
    private(set) var queues: [Queue] = []
    private(set) var bindings: [Binding] = []

    var isEmpty: Bool { exchanges.isEmpty && queues.isEmpty && bindings.isEmpty }

    /// Records what a successful method changed.
    func record(_ method: ClientMethod, reply: ServerMethod) {
        switch method {
        case .exchangeDeclare(let name, let type, let passive, let durable, let autoDelete, let isInternal, let arguments):
            guard !passive else { return }
            exchanges.removeAll { $0.name == name }
            exchanges.append(
                Exchange(
                    name: name, type: type, durable: durable, autoDelete: autoDelete, isInternal: isInternal,
                    arguments: arguments))
        case .exchangeDelete(let name, _):
            forgetExchange(name)
        case .queueDeclare(let name, let passive, let durable, let exclusive, let autoDelete, let arguments):
            guard !passive, case .queueDeclareOk(let info) = reply else { return }
            queues.removeAll { $0.name == info.name }
            queues.append(
                Queue(
                    name: info.name, isServerNamed: name.isEmpty, durable: durable, exclusive: exclusive,
                    autoDelete: autoDelete, arguments: arguments))
        case .queueDelete(let name, _, _):
            forgetQueue(name)
        case .queueBind(let queue, let exchange, let routingKey, let arguments):
            add(Binding(destinationKind: .queue, destination: queue, source: exchange, routingKey: routingKey, arguments: arguments))
        case .queueUnbind(let queue, let exchange, let routingKey, let arguments):
            remove(Binding(destinationKind: .queue, destination: queue, source: exchange, routingKey: routingKey, arguments: arguments))
        case .exchangeBind(let destination, let source, let routingKey, let arguments):
            add(Binding(destinationKind: .exchange, destination: destination, source: source, routingKey: routingKey, arguments: arguments))
        case .exchangeUnbind(let destination, let source, let routingKey, let arguments):
            remove(Binding(destinationKind: .exchange, destination: destination, source: source, routingKey: routingKey, arguments: arguments))
        default:
            break
        }
    }

    /// Whether a successful `method` changes what is recorded.
    static func changes(_ method: ClientMethod) -> Bool {
        switch method {
        case .exchangeDeclare(_, _, let passive, _, _, _, _), .queueDeclare(_, let passive, _, _, _, _): !passive
        case .exchangeDelete, .queueDelete, .queueBind, .queueUnbind, .exchangeBind, .exchangeUnbind: true
        default: false
        }
    }

    private func add(_ binding: Binding) {
        if !bindings.contains(binding) { bindings.append(binding) }
    }

    private func remove(_ binding: Binding) {
        bindings.removeAll { $0 == binding }
        forgetIfUnboundAutoDelete(binding.source)
    }

    /// The exchange is gone, and with it every binding from or to it.
    private func forgetExchange(_ name: String) {
        exchanges.removeAll { $0.name == name }
        let sources = Set(bindings.lazy.filter { $0.destinationKind == .exchange && $0.destination == name }.map(\.source))
        bindings.removeAll { $0.source == name || ($0.destinationKind == .exchange && $0.destination == name) }
        for source in sources { forgetIfUnboundAutoDelete(source) }
    }

    /// RabbitMQ deletes an auto-delete exchange once its last binding as a source is removed:
    /// forget it then too, so recovery does not bring it back.
    private func forgetIfUnboundAutoDelete(_ name: String) {
        guard exchanges.contains(where: { $0.name == name && $0.autoDelete }),
            !bindings.contains(where: { $0.source == name })
        else { return }
        forgetExchange(name)
    }

    func queue(named name: String) -> Queue? {
        queues.first { $0.name == name }
    }

    /// The queue is gone (deleted, or an auto-delete queue lost its last consumer).
    func forgetQueue(_ name: String) {
        queues.removeAll { $0.name == name }
        let sources = Set(bindings.lazy.filter { $0.destinationKind == .queue && $0.destination == name }.map(\.source))
        bindings.removeAll { $0.destinationKind == .queue && $0.destination == name }
        for source in sources { forgetIfUnboundAutoDelete(source) }
    }

    /// A server-named queue got a new name when it was declared again: its bindings follow it.
    func rename(queue oldName: String, to newName: String) {
        for index in queues.indices where queues[index].name == oldName { queues[index].name = newName }
        for index in bindings.indices where bindings[index].destinationKind == .queue && bindings[index].destination == oldName {
            bindings[index].destination = newName
        }
    }
}
