import AMQPEvents

/// The rules of AsyncAPI 3.0 (and of its AMQP 0-9-1 bindings, 0.3.0) that a document must keep,
/// checked on the document as JSON: what a parser such as AsyncAPI's own would refuse.
enum AsyncAPIRules {
    static func problems(of document: JSONValue) -> [String] {
        var problems: [String] = []
        func problem(_ text: String) { problems.append(text) }

        if document["asyncapi"] != "3.0.0" { problem("asyncapi is not 3.0.0") }
        for field in ["title", "version"] where (document["info"]?[field]?.stringValue ?? "").isEmpty {
            problem("info.\(field) is missing")
        }
        for (name, server) in document["servers"]?.objectValue ?? [:] {
            if server["host"]?.stringValue == nil || server["protocol"]?.stringValue == nil { problem("server \(name) has no host or protocol") }
        }
        let channels = document["channels"]?.objectValue ?? [:]
        let operations = document["operations"]?.objectValue ?? [:]
        let messages = document["components"]?["messages"]?.objectValue ?? [:]
        let schemas = document["components"]?["schemas"]?.objectValue ?? [:]
        if channels.isEmpty && operations.isEmpty { problem("neither channels nor operations") }

        // Keys: channels and operations `^[A-Za-z0-9_\-]+$`; components also allow dots.
        for key in channels.keys where !matches(key, extra: "") { problem("channel id \(key)") }
        for key in operations.keys where !matches(key, extra: "") { problem("operation id \(key)") }
        for key in Array(messages.keys) + Array(schemas.keys) where !matches(key, extra: ".") { problem("component key \(key)") }

        // Every reference resolves.
        for reference in references(in: document) where resolve(reference, in: document) == nil {
            problem("$ref \(reference) resolves to nothing")
        }

        for (id, channel) in channels {
            let address = channel["address"]
            if address != .null && address?.stringValue == nil { problem("channel \(id): address is neither a string nor null") }
            for (key, message) in channel["messages"]?.objectValue ?? [:] {
                guard let reference = message["$ref"]?.stringValue, reference.hasPrefix("#/components/messages/") else {
                    problem("channel \(id): message \(key) is not a reference to a component message")
                    continue
                }
            }
            if let amqp = channel["bindings"]?["amqp"] {
                problems += amqpChannelProblems(amqp, channel: id)
            }
        }

        for (id, operation) in operations {
            guard ["send", "receive"].contains(operation["action"]?.stringValue ?? "") else {
                problem("operation \(id): action must be send or receive")
                continue
            }
            guard let channelReference = operation["channel"]?["$ref"]?.stringValue, channelReference.hasPrefix("#/channels/") else {
                problem("operation \(id): channel is not a reference to a channel")
                continue
            }
            // An operation's messages must be messages of its channel.
            for message in operation["messages"]?.arrayValue ?? [] {
                let reference = message["$ref"]?.stringValue ?? ""
                if !reference.hasPrefix(channelReference + "/messages/") { problem("operation \(id): message \(reference) is not its channel's") }
            }
            if let reply = operation["reply"] {
                let replyChannel = reply["channel"]?["$ref"]?.stringValue ?? ""
                if !replyChannel.hasPrefix("#/channels/") { problem("operation \(id): reply channel is not a channel reference") }
                for message in reply["messages"]?.arrayValue ?? [] where !(message["$ref"]?.stringValue ?? "").hasPrefix(replyChannel + "/messages/") {
                    problem("operation \(id): a reply message is not its reply channel's")
                }
                if let location = reply["address"]?["location"]?.stringValue, !isRuntimeExpression(location) {
                    problem("operation \(id): reply address location \(location) is not a runtime expression")
                }
            }
            if let amqp = operation["bindings"]?["amqp"] {
                if amqp["bindingVersion"] != "0.3.0" { problem("operation \(id): AMQP binding version") }
                if let mode = amqp["deliveryMode"], mode != 1 && mode != 2 { problem("operation \(id): deliveryMode must be 1 or 2") }
            }
        }

        for (id, message) in messages {
            guard let payload = message["payload"] else {
                problem("message \(id) has no payload")
                continue
            }
            let schema = payload["$ref"]?.stringValue.flatMap { resolve($0, in: document) } ?? payload
            if schema["type"] == nil { problem("message \(id): its payload schema has no type") }
            if let headers = message["headers"], headers["type"] != "object" { problem("message \(id): headers must be an object schema") }
            if let location = message["correlationId"]?["location"]?.stringValue, !isRuntimeExpression(location) {
                problem("message \(id): correlationId location \(location) is not a runtime expression")
            }
            if let amqp = message["bindings"]?["amqp"], amqp["bindingVersion"] != "0.3.0" { problem("message \(id): AMQP binding version") }
        }
        return problems
    }

    private static func amqpChannelProblems(_ amqp: JSONValue, channel id: String) -> [String] {
        var problems: [String] = []
        if amqp["bindingVersion"] != "0.3.0" { problems.append("channel \(id): AMQP binding version") }
        switch amqp["is"]?.stringValue {
        case "routingKey":
            guard let exchange = amqp["exchange"] else { return problems + ["channel \(id): a routing key without its exchange"] }
            if (exchange["name"]?.stringValue ?? "").utf8.count > 255 { problems.append("channel \(id): exchange name over 255 bytes") }
            if !["topic", "direct", "fanout", "default", "headers"].contains(exchange["type"]?.stringValue ?? "") {
                problems.append("channel \(id): exchange type")
            }
        case "queue":
            guard let queue = amqp["queue"] else { return problems + ["channel \(id): a queue binding without its queue"] }
            if (queue["name"]?.stringValue ?? "").utf8.count > 255 { problems.append("channel \(id): queue name over 255 bytes") }
        default:
            problems.append("channel \(id): AMQP binding `is` must be queue or routingKey")
        }
        return problems
    }

    private static func matches(_ key: String, extra: String) -> Bool {
        !key.isEmpty && key.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-\(extra)".contains($0)) }
    }

    private static func isRuntimeExpression(_ text: String) -> Bool {
        text.hasPrefix("$message.header#") || text.hasPrefix("$message.payload#")
    }

    private static func references(in value: JSONValue) -> [String] {
        switch value {
        case .object(let members):
            (members["$ref"]?.stringValue.map { [$0] } ?? []) + members.values.flatMap(references)
        case .array(let elements): elements.flatMap(references)
        default: []
        }
    }

    /// A local JSON pointer (`#/a/b`), or `nil`.
    static func resolve(_ reference: String, in document: JSONValue) -> JSONValue? {
        guard reference.hasPrefix("#/") else { return nil }
        var node: JSONValue? = document
        for token in reference.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) {
            let key = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            node = node?[key]
        }
        return node
    }

    /// The payload schema of the message for an event type and schema version.
    static func payloadSchema(of type: String, version: Int, in document: JSONValue) -> JSONValue? {
        let messages = document["components"]?["messages"]?.objectValue ?? [:]
        guard
            let message = messages.values.first(where: {
                $0["name"]?.stringValue == type && $0["x-schema-version"] == .number(Double(version))
            }),
            let reference = message["payload"]?["$ref"]?.stringValue
        else { return nil }
        return resolve(reference, in: document)
    }
}
