import AMQPClient
import Foundation

/// How an event's attributes travel with its payload. Every subscription reads all three;
/// a bus publishes in ``EventBus/Configuration/envelope`` unless a publish says otherwise.
///
/// | Attribute | ``amqp`` (AMQP properties) | ``cloudEventsBinary`` (headers) | ``cloudEventsStructured`` (JSON body) |
/// |---|---|---|---|
/// | event type | `type` | `ce-type` | `type` |
/// | message id | `message_id` | `ce-id` | `id` |
/// | source | `app_id` | `ce-source` | `source` |
/// | time | `timestamp` | `ce-time` (RFC 3339) | `time` |
/// | subject | header `x-subject` | `ce-subject` | `subject` |
/// | payload's media type | `content_type` | `content_type` | `datacontenttype` |
/// | correlation id | `correlation_id` | `ce-correlationid` | `correlationid` |
/// | causation id | header `x-causation-id` | `ce-causationid` | `causationid` |
/// | schema version | header `x-schema-version` | `ce-schemaversion` | `schemaversion` |
/// | payload | body | body | `data` (`data_base64` for a payload that is not JSON) |
///
/// The CloudEvents modes follow the RabbitMQ protocol binding of CloudEvents 1.0 (the one
/// Knative's eventing-rabbitmq defines and the CloudEvents SDKs implement). Correlation,
/// causation and schema version travel as extension attributes. An event we publish in either
/// CloudEvents mode also carries the AMQP properties (`type`, `message_id`, …), so routing,
/// deduplication and the parking lot work the same whatever the envelope.
public enum EventEnvelope: String, Sendable, CaseIterable, Codable {
    /// Attributes in the AMQP properties and a few headers; the body is the payload.
    case amqp
    /// CloudEvents binary mode: attributes in `ce-` headers; the body is the payload.
    case cloudEventsBinary = "cloudevents-binary"
    /// CloudEvents structured mode: the body is one JSON object of the attributes and the payload.
    case cloudEventsStructured = "cloudevents-structured"
}

/// The CloudEvents names of the binding.
enum CloudEvents {
    static let specVersion = "1.0"
    static let headerPrefix = "ce-"
    static let structuredContentType = "application/cloudevents+json"
    static let mediaTypePrefix = "application/cloudevents"
    /// The context attributes besides the extensions, which every event has.
    static let specVersionAttribute = "specversion"

    /// Whether a content type names a CloudEvents format (`application/cloudevents…`, any case).
    /// Asked of every delivery: compares bytes, allocating nothing.
    static func isCloudEventsMediaType(_ contentType: String) -> Bool {
        var type = contentType.utf8.makeIterator()
        for expected in mediaTypePrefix.utf8 {
            guard let byte = type.next() else { return false }
            let lowered = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
            guard lowered == expected else { return false }
        }
        return true
    }
}

extension EventEnvelope {
    /// The message for an event: its properties and body in this envelope. `contentType` is the
    /// coder's; `source` the CloudEvents source.
    func message(
        metadata: EventMetadata, body: [UInt8], contentType: String, source: String
    ) throws(EventError) -> (AMQPProperties, [UInt8]) {
        switch self {
        case .amqp:
            return (metadata.properties(contentType: contentType), body)
        case .cloudEventsBinary:
            var properties = metadata.properties(contentType: contentType)
            var headers = properties.headers ?? [:]
            for (name, value) in metadata.cloudEventAttributes(source: source) {
                if case .string(let text) = value {
                    headers[CloudEvents.headerPrefix + name] = .string(text)
                } else if case .number(let number) = value {
                    headers[CloudEvents.headerPrefix + name] = .string(String(Int(number)))
                }
            }
            properties.headers = headers
            return (properties, body)
        case .cloudEventsStructured:
            var attributes = metadata.cloudEventAttributes(source: source)
            attributes["datacontenttype"] = .string(contentType)
            let isJSON = contentType.lowercased().contains("json")
            if !isJSON { attributes["data_base64"] = .string(Data(body).base64EncodedString()) }
            var envelope: [UInt8]
            do {
                envelope = try JSONValue.object(attributes).jsonBytes()
            } catch {
                throw EventError(code: .encodingFailed, message: "could not write the CloudEvents envelope of \(metadata.type): \(error)")
            }
            if isJSON {
                // The payload goes in as the coder wrote it: spliced, not parsed and written again.
                envelope.removeLast()  // "}"
                envelope += Array(#","data":"#.utf8) + body + [UInt8(ascii: "}")]
            }
            return (metadata.properties(contentType: CloudEvents.structuredContentType), envelope)
        }
    }
}

extension EventMetadata {
    /// The CloudEvents context attributes of this envelope (all but `datacontenttype` and the data).
    func cloudEventAttributes(source: String) -> [String: JSONValue] {
        var attributes: [String: JSONValue] = [
            CloudEvents.specVersionAttribute: .string(CloudEvents.specVersion), "id": .string(messageID), "type": .string(type),
            "source": .string(self.source ?? source), "schemaversion": .number(Double(schemaVersion)),
        ]
        if let timestamp { attributes["time"] = .string(timestamp.formatted(.iso8601)) }
        if let subject { attributes["subject"] = .string(subject) }
        if let correlationID { attributes["correlationid"] = .string(correlationID) }
        if let causationID { attributes["causationid"] = .string(causationID) }
        return attributes
    }
}

/// A received message's envelope, whichever it is, and where its payload is.
struct ReceivedEnvelope {
    var metadata: EventMetadata
    /// A structured CloudEvent's payload is the `data` member of its body (decoded in place, so
    /// that nothing is lost by parsing it twice); otherwise the body is the payload.
    var payloadIsWrapped: Bool
    var body: [UInt8]

    /// Reads the envelope of `delivery`: a structured CloudEvent by its content type, a binary one
    /// by its `ce-specversion` header, else ours. `nil` with why, when it names no valid event.
    static func read(_ properties: AMQPProperties, body: [UInt8]) -> Result<ReceivedEnvelope, EventError> {
        if let contentType = properties.contentType, CloudEvents.isCloudEventsMediaType(contentType) {
            return structured(properties, body: body, contentType: contentType)
        }
        if let headers = properties.headers, headers[CloudEvents.headerPrefix + CloudEvents.specVersionAttribute] != nil {
            return binary(properties, headers: headers, body: body)
        }
        guard let metadata = EventMetadata(properties) else {
            return .failure(EventError(code: .unknownEventType, message: "the message has no type property"))
        }
        return .success(ReceivedEnvelope(metadata: metadata, payloadIsWrapped: false, body: body))
    }

    private static func invalid(_ why: String) -> Result<ReceivedEnvelope, EventError> {
        .failure(EventError(code: .decodingFailed, message: "not a valid CloudEvent: \(why)"))
    }

    private static func binary(
        _ properties: AMQPProperties, headers: AMQPFieldTable, body: [UInt8]
    ) -> Result<ReceivedEnvelope, EventError> {
        var attributes: [String: String] = [:]
        var rest: AMQPFieldTable = [:]
        for (name, value) in headers.values {
            let lowered = name.lowercased()
            guard lowered.hasPrefix(CloudEvents.headerPrefix) else {
                rest[name] = value
                continue
            }
            guard let text = value.text else { return invalid("header \(name) is not a string") }
            attributes[String(lowered.dropFirst(CloudEvents.headerPrefix.count))] = text
        }
        return envelope(attributes, properties: properties, headers: rest, body: body, envelope: .cloudEventsBinary, wrapped: false)
    }

    private static func structured(
        _ properties: AMQPProperties, body: [UInt8], contentType: String
    ) -> Result<ReceivedEnvelope, EventError> {
        let format = contentType.lowercased().split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) }
        guard format == CloudEvents.structuredContentType else {
            return invalid("the event format \(contentType) is not read here (only \(CloudEvents.structuredContentType))")
        }
        guard let top = try? JSONDecoder().decode(StructuredAttributes.self, from: Data(body)) else {
            return invalid("the body is not a JSON object")
        }
        var payload = body
        var wrapped = top.hasData
        if let encoded = top.dataBase64 {
            guard let text = encoded, let data = Data(base64Encoded: text) else { return invalid("data_base64 is not base64") }
            payload = Array(data)
            wrapped = false
        } else if !wrapped {
            payload = []
        }
        let attributes = top.attributes
        return envelope(
            attributes, properties: properties, headers: properties.headers ?? [:], body: payload, envelope: .cloudEventsStructured,
            wrapped: wrapped)
    }

    private static func envelope(
        _ attributes: [String: String], properties: AMQPProperties, headers: AMQPFieldTable, body: [UInt8],
        envelope: EventEnvelope, wrapped: Bool
    ) -> Result<ReceivedEnvelope, EventError> {
        guard attributes[CloudEvents.specVersionAttribute] == CloudEvents.specVersion else {
            return invalid("specversion \(attributes[CloudEvents.specVersionAttribute] ?? "none") (only \(CloudEvents.specVersion) is read)")
        }
        for required in ["id", "type", "source"] where (attributes[required] ?? "").isEmpty {
            return invalid("no \(required) attribute")
        }
        var headers = headers
        headers.values.removeValue(forKey: EnvelopeHeader.schemaVersion)
        headers.values.removeValue(forKey: EnvelopeHeader.causationID)
        var metadata = EventMetadata(
            type: attributes["type"]!, messageID: attributes["id"]!,
            timestamp: attributes["time"].flatMap { try? Date($0, strategy: .iso8601) } ?? properties.timestamp,
            correlationID: attributes["correlationid"] ?? properties.correlationID, causationID: attributes["causationid"],
            schemaVersion: attributes["schemaversion"].flatMap { Int($0) } ?? 1, appID: properties.appID, headers: headers)
        metadata.source = attributes["source"]
        metadata.subject = attributes["subject"]
        metadata.envelope = envelope
        return .success(ReceivedEnvelope(metadata: metadata, payloadIsWrapped: wrapped, body: body))
    }
}

extension AMQPFieldValue {
    /// A header's text: a string, or bytes that are UTF-8 (what other clients send for strings).
    var text: String? {
        switch self {
        case .string(let value): value
        case .bytes(let bytes): String(validating: bytes, as: UTF8.self)
        default: nil
        }
    }
}

/// A structured CloudEvent's top-level members: its attributes as text, and whether it has `data`
/// or `data_base64`. Only scalars are read; nested values (the data, an extension's object) are
/// skipped, so a deeply nested body costs no more than its parse, which Foundation bounds.
struct StructuredAttributes: Decodable {
    struct Name: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    var attributes: [String: String] = [:]
    var hasData = false
    /// `nil`: no `data_base64`; `.some(nil)`: one that is not a string.
    var dataBase64: String??

    init(from decoder: any Decoder) throws {
        let members = try decoder.container(keyedBy: Name.self)
        for name in members.allKeys {
            switch name.stringValue {
            case "data": hasData = true
            case "data_base64": dataBase64 = .some(try? members.decode(String.self, forKey: name))
            default:
                if let text = try? members.decode(String.self, forKey: name) {
                    attributes[name.stringValue] = text
                } else if let integer = try? members.decode(Int64.self, forKey: name) {
                    attributes[name.stringValue] = String(integer)
                } else if let number = try? members.decode(Double.self, forKey: name) {
                    attributes[name.stringValue] = String(number)
                } else if let flag = try? members.decode(Bool.self, forKey: name) {
                    attributes[name.stringValue] = String(flag)
                }
            }
        }
    }
}

/// A structured CloudEvent's payload, decoded where it is: the envelope's `data` member.
struct CloudEventData<Payload: Decodable>: Decodable {
    var data: Payload
}

extension EventBus.Configuration {
    /// The CloudEvents `source`: as configured, or `/<appID>`.
    var cloudEventsSource: String { source ?? "/\(appID ?? "amqp-events")" }
}
