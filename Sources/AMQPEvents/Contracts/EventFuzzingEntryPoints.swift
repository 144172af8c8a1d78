import AMQPClient

/// Entry points for the fuzz target in `Fuzz/` that feeds the event layer what a peer sends:
/// the envelope reader (ours, binary and structured CloudEvents), the payload's decoding (in
/// place inside a structured CloudEvent), and JSON parsing with schema validation (what a
/// contract check does with a received body). Not API: `@_spi(Fuzzing)`.
@_spi(Fuzzing)
public enum EventFuzzingEntryPoints {
    /// The first byte picks the envelope; the rest is split at the first two zero bytes into
    /// its attributes (`name=value` lines) and the body. Must never crash, whatever the bytes.
    public static func readEnvelope(_ bytes: UnsafeRawBufferPointer) {
        guard let selector = bytes.first else { return }
        let rest = Array(bytes.dropFirst())
        let parts = rest.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
        let attributeText = String(decoding: parts.first ?? [], as: UTF8.self)
        let body = parts.count > 1 ? Array(parts[1]) : []
        var attributes: [(String, String)] = []
        for line in attributeText.split(separator: "\n") {
            let pair = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            attributes.append((String(pair[0]), pair.count > 1 ? String(pair[1]) : ""))
        }
        let properties: AMQPProperties
        switch selector % 4 {
        case 0:
            // A structured CloudEvent: the attributes are in the body.
            properties = AMQPProperties(contentType: attributes.first?.1 ?? CloudEvents.structuredContentType)
        case 1:
            // A binary CloudEvent: the attributes are `ce-` headers, strings or bytes.
            var headers = AMQPFieldTable([CloudEvents.headerPrefix + CloudEvents.specVersionAttribute: .string(CloudEvents.specVersion)])
            for (index, (name, value)) in attributes.enumerated() {
                headers[CloudEvents.headerPrefix + name] = index.isMultiple(of: 2) ? .string(value) : .bytes(Array(value.utf8))
            }
            properties = AMQPProperties(headers: headers)
        default:
            // Ours: the type property, and our headers.
            var headers = AMQPFieldTable()
            for (name, value) in attributes.dropFirst() { headers[name] = .string(value) }
            properties = AMQPProperties(
                headers: headers, messageID: attributes.first?.1, type: attributes.first?.0)
        }
        guard case .success(let received) = ReceivedEnvelope.read(properties, body: body) else { return }
        _ = try? EventHandler.decode(
            FuzzedEvent.self, received.body, wrapped: received.payloadIsWrapped, JSONEventCoder())
        if !received.payloadIsWrapped, let value = try? JSONValue(parsing: received.body) {
            _ = EventSchema.problems(of: value, against: FuzzedEvent.schema)
        }
    }

    /// A payload shape with the kinds of field events have.
    private struct FuzzedEvent: Decodable {
        var orderId: String
        var amount: Double
        var items: [Item]?
        var tags: [String: String]?
        struct Item: Decodable {
            var id: String
            var quantity: Int
        }

        static let schema: JSONValue = [
            "type": "object",
            "required": ["orderId", "amount"],
            "properties": [
                "orderId": ["type": "string", "minLength": 1],
                "amount": ["type": "number", "minimum": 0],
                "items": [
                    "type": "array",
                    "items": [
                        "type": "object", "required": ["id", "quantity"],
                        "properties": ["id": ["type": "string"], "quantity": ["type": "integer"]],
                    ],
                ],
                "tags": ["type": "object", "additionalProperties": ["type": "string"]],
            ],
        ]
    }
}
