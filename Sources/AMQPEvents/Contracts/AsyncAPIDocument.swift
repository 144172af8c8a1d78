/// An AsyncAPI 3.0 document of an event-driven system, written from its code: the exchanges and
/// queues it declares (channels, with their AMQP bindings), what each service sends and receives
/// (operations, request/reply included), and every event type in every schema version it reads
/// (messages, with their AMQP properties, headers and a JSON Schema of the payload).
///
/// ```swift
/// var document = AsyncAPIDocument(title: "Orders", version: "1.0.0")
/// try document.publishes(OrderPlaced.self, to: "orders", by: "order-service")
/// for service in [payments, inventory] { try document.subscribes(service) }
/// print(try document.jsonText())
/// ```
///
/// Another team reads it to learn every event's shape and route, generates code from it, or
/// validates messages against its schemas.
public struct AsyncAPIDocument: Sendable {
    /// The version of AsyncAPI it writes (the document's `asyncapi` field).
    public static let asyncAPIVersion = "3.0.0"
    /// The version of AsyncAPI's AMQP 0-9-1 bindings it writes.
    public static let amqpBindingVersion = "0.3.0"

    /// The system's name (`info.title`).
    public var title: String
    /// The version of the system's API, not of AsyncAPI (`info.version`).
    public var version: String
    /// What the system does, if said (`info.description`).
    public var description: String?
    /// Where the broker is, for the `servers` section.
    public var host: String
    /// The broker's virtual host, for the `servers` section and every channel's bindings.
    public var vhost: String

    private var channels: [String: [String: JSONValue]] = [:]
    private var operations: [String: JSONValue] = [:]
    private var messages: [String: JSONValue] = [:]
    private var schemas: [String: JSONValue] = [:]

    /// An empty document of the system `title` at `version`, on a broker at `host` and `vhost`.
    public init(title: String, version: String, description: String? = nil, host: String = "localhost:5672", vhost: String = "/") {
        self.title = title
        self.version = version
        self.description = description
        self.host = host
        self.vhost = vhost
    }

    // MARK: What the system does

    /// `service` publishes events of `type` to the topic exchange `exchange`, routed by their type.
    public mutating func publishes<Event: AMQPEvent>(_ type: Event.Type, to exchange: String, by service: String) throws(EventError) {
        let message = try addMessage(Event.self)
        let channel = routeChannel(exchange: exchange, routingKey: Event.eventType, message: message)
        addOperation(
            Self.id("\(service).publish.\(Event.eventType)"), action: "send", channel: channel, messages: [message],
            summary: "\(service) publishes \(Event.eventType) to exchange \(exchange)",
            bindings: ["deliveryMode": 2, "mandatory": true])
    }

    /// `service` sends events of `type` to the work queue `queue` (through the default exchange).
    public mutating func sends<Event: AMQPEvent>(_ type: Event.Type, toQueue queue: String, by service: String) throws(EventError) {
        let message = try addMessage(Event.self)
        let channel = queueChannel(queue, message: message)
        addOperation(
            Self.id("\(service).send.\(Event.eventType)"), action: "send", channel: channel, messages: [message],
            summary: "\(service) sends \(Event.eventType) to queue \(queue)", bindings: ["deliveryMode": 2, "mandatory": true])
    }

    /// What `subscription` receives: each event type it handles, in its current and every older
    /// version it upcasts, from its queue (bound to its exchange by those types).
    public mutating func subscribes(_ subscription: EventSubscription, as service: String? = nil) throws(EventError) {
        var received: [MessageKey] = []
        for type in subscription.eventTypes {
            let handler = subscription.handlers[type]!
            received.append(try addMessage(type: type, version: handler.schemaVersion, schema: Self.schema(handler.schema)))
            for (version, upcast) in handler.upcasts.sorted(by: { $0.key < $1.key }) {
                received.append(try addMessage(type: type, version: version, schema: Self.schema(upcast.schema), current: false))
            }
        }
        let channel: String
        let name: String
        switch subscription.kind {
        case .publishSubscribe(let exchange, let subscriber):
            name = service ?? subscriber
            channel = queueChannel(subscription.queue!, messages: received, boundTo: exchange, routingKeys: subscription.eventTypes)
            for key in received { _ = routeChannel(exchange: exchange, routingKey: key.type, message: key) }
        case .workQueue(let queue):
            name = service ?? queue
            channel = queueChannel(queue, messages: received)
        case .broadcast(let exchange):
            name = service ?? "\(exchange).broadcast"
            channel = queueChannel(
                nil, id: "\(exchange).broadcast", messages: received, boundTo: exchange, routingKeys: subscription.eventTypes)
            for key in received { _ = routeChannel(exchange: exchange, routingKey: key.type, message: key) }
        }
        addOperation(
            Self.id("\(name).receive"), action: "receive", channel: channel, messages: received,
            summary: "\(name) handles \(subscription.eventTypes.joined(separator: ", "))", bindings: ["ack": true])
    }

    /// `service` answers requests of `type` from `queue`, replying to each requester's reply-to address.
    public mutating func responds<Request: AMQPRequest>(to queue: String, with type: Request.Type, as service: String) throws(EventError) {
        let request = try addMessage(Request.self)
        let response = try addMessage(Request.Response.self)
        let channel = queueChannel(queue, message: request)
        addOperation(
            Self.id("\(service).respond.\(Request.eventType)"), action: "receive", channel: channel, messages: [request],
            summary: "\(service) answers \(Request.eventType) with \(Request.Response.eventType)", bindings: ["ack": true],
            reply: replyTo(response))
    }

    /// `service` requests `type` from the responder of `queue` and waits for its response.
    public mutating func requests<Request: AMQPRequest>(_ type: Request.Type, to queue: String, by service: String) throws(EventError) {
        let request = try addMessage(Request.self)
        let response = try addMessage(Request.Response.self)
        let channel = queueChannel(queue, message: request)
        addOperation(
            Self.id("\(service).request.\(Request.eventType)"), action: "send", channel: channel, messages: [request],
            summary: "\(service) requests \(Request.eventType) and waits for \(Request.Response.eventType)",
            bindings: ["deliveryMode": 1], reply: replyTo(response))
    }

    // MARK: The document

    /// The document as JSON.
    public var json: JSONValue {
        var info: [String: JSONValue] = ["title": .string(title), "version": .string(version)]
        if let description { info["description"] = .string(description) }
        return [
            "asyncapi": .string(Self.asyncAPIVersion),
            "info": .object(info),
            "defaultContentType": "application/json",
            "servers": [
                "rabbitmq": [
                    "host": .string(host), "pathname": .string(vhost), "protocol": "amqp", "protocolVersion": "0.9.1",
                    "description": "RabbitMQ (AMQP 0-9-1)",
                ]
            ],
            "channels": .object(channels.mapValues { .object($0) }),
            "operations": .object(operations),
            "components": ["messages": .object(messages), "schemas": .object(schemas)],
        ]
    }

    /// The document as JSON text, keys sorted: the same text for the same code.
    public func jsonText() throws -> String {
        try json.jsonText()
    }

    // MARK: Parts

    struct MessageKey: Hashable {
        var type: String
        var id: String
    }

    /// Adds an event type's message and payload schema (once); returns its key.
    private mutating func addMessage<Event: AMQPEvent>(_ type: Event.Type) throws(EventError) -> MessageKey {
        try addMessage(type: Event.eventType, version: Event.schemaVersion, schema: EventSchema.of(Event.self))
    }

    private mutating func addMessage(type: String, version: Int, schema: JSONValue, current: Bool = true) throws(EventError)
        -> MessageKey
    {
        // An older version is a message of its own: `OrderPlaced_v1`.
        let id = current ? Self.id(type) : Self.id("\(type).v\(version)")
        schemas[id] = schema
        messages[id] = [
            "name": .string(type),
            "title": .string("\(type) v\(version)"),
            "summary": .string("The \(type) event, schema version \(version). Its AMQP type property is \(type)."),
            "contentType": "application/json",
            "payload": ["$ref": .string("#/components/schemas/\(id)")],
            "headers": [
                "type": "object",
                "properties": [
                    "x-schema-version": ["type": "integer", "const": .number(Double(version))],
                    "x-causation-id": ["type": "string", "description": "The message id of the event that caused this one."],
                ],
            ],
            "correlationId": [
                "description": "The AMQP correlation_id property: shared by every event of one business transaction.",
                "location": "$message.header#/correlation_id",
            ],
            "bindings": ["amqp": ["messageType": .string(type), "bindingVersion": .string(Self.amqpBindingVersion)]],
            "x-schema-version": .number(Double(version)),
        ]
        return MessageKey(type: type, id: id)
    }

    /// The channel of a routing key on a topic exchange.
    private mutating func routeChannel(exchange: String, routingKey: String, message: MessageKey) -> String {
        let id = Self.id("\(exchange).\(routingKey)")
        var channel = channels[id] ?? [
            "address": .string(routingKey),
            "title": .string("\(routingKey) on exchange \(exchange)"),
            "bindings": [
                "amqp": [
                    "is": "routingKey",
                    "exchange": [
                        "name": .string(exchange), "type": "topic", "durable": true, "autoDelete": false, "vhost": .string(vhost),
                    ],
                    "bindingVersion": .string(Self.amqpBindingVersion),
                ]
            ],
            "messages": [:],
        ]
        channel["messages"] = Self.adding(message, to: channel["messages"])
        channels[id] = channel
        return id
    }

    private mutating func queueChannel(_ queue: String, message: MessageKey) -> String {
        queueChannel(queue, messages: [message])
    }

    /// The channel of a queue (`nil`: a server-named one), with the bindings that fill it.
    private mutating func queueChannel(
        _ queue: String?, id: String? = nil, messages: [MessageKey], boundTo exchange: String? = nil, routingKeys: [String] = []
    ) -> String {
        let id = Self.id(id ?? queue!)
        var channel = channels[id] ?? [
            "address": queue.map { .string($0) } ?? .null,
            "title": .string(queue.map { "queue \($0)" } ?? "a server-named queue per live subscriber"),
            "bindings": [
                "amqp": [
                    "is": "queue",
                    "queue": [
                        "name": .string(queue ?? "amq.gen-…"), "durable": .bool(queue != nil), "exclusive": .bool(queue == nil),
                        "autoDelete": .bool(queue == nil), "vhost": .string(vhost),
                    ],
                    "bindingVersion": .string(Self.amqpBindingVersion),
                ]
            ],
            "messages": [:],
        ]
        for message in messages { channel["messages"] = Self.adding(message, to: channel["messages"]) }
        if let exchange {
            channel["description"] = .string(
                "Bound to the topic exchange \(exchange) by the routing keys \(routingKeys.joined(separator: ", ")).")
            channel["x-amqp-bindings"] = .array(routingKeys.map { ["exchange": .string(exchange), "routingKey": .string($0)] })
        }
        channels[id] = channel
        return id
    }

    /// The reply of a request: to the requester's reply-to address (RabbitMQ's direct reply-to).
    private mutating func replyTo(_ response: MessageKey) -> JSONValue {
        let id = "replies"
        var channel = channels[id] ?? [
            "address": .null,
            "title": "the requester's reply-to address",
            "description": "Direct reply-to (amq.rabbitmq.reply-to): each reply goes to the address its request names.",
            "messages": [:],
        ]
        channel["messages"] = Self.adding(response, to: channel["messages"])
        channels[id] = channel
        return [
            "address": ["location": "$message.header#/reply_to", "description": "The request's AMQP reply_to property."],
            "channel": ["$ref": "#/channels/replies"],
            "messages": [["$ref": .string("#/channels/replies/messages/\(response.id)")]],
        ]
    }

    private mutating func addOperation(
        _ id: String, action: String, channel: String, messages: [MessageKey], summary: String, bindings: [String: JSONValue],
        reply: JSONValue? = nil
    ) {
        var bindings = bindings
        bindings["bindingVersion"] = .string(Self.amqpBindingVersion)
        var operation: [String: JSONValue] = [
            "action": .string(action),
            "channel": ["$ref": .string("#/channels/\(channel)")],
            "messages": .array(messages.map { ["$ref": .string("#/channels/\(channel)/messages/\($0.id)")] }),
            "summary": .string(summary),
            "bindings": ["amqp": .object(bindings)],
        ]
        if let reply { operation["reply"] = reply }
        operations[id] = .object(operation)
    }

    private static func adding(_ message: MessageKey, to messages: JSONValue?) -> JSONValue {
        var all = messages?.objectValue ?? [:]
        all[message.id] = ["$ref": .string("#/components/messages/\(message.id)")]
        return .object(all)
    }

    /// A schema from a type-erased handler, with the errors the document promises.
    private static func schema(_ make: () throws -> JSONValue) throws(EventError) -> JSONValue {
        do {
            return try make()
        } catch {
            throw error as? EventError ?? EventError(code: .invalidArgument, message: "\(error)")
        }
    }

    /// A key AsyncAPI accepts (`^[A-Za-z0-9_\-]+$`): anything else becomes `_`.
    static func id(_ name: String) -> String {
        String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") ? $0 : "_" })
    }
}
