import Foundation

/// Turns events into message bodies and back. ``JSONEventCoder`` unless the bus is given another.
public protocol EventCoder: Sendable {
    /// The `content_type` of the messages it writes (`application/json`).
    var contentType: String { get }
    /// The message body of `event`.
    func encode<Event: Encodable>(_ event: Event) throws -> [UInt8]
    /// The event of type `type` a message body holds; throws when it holds none.
    func decode<Event: Decodable>(_ type: Event.Type, from body: [UInt8]) throws -> Event
}

/// JSON with Foundation's coders; dates as ISO 8601 strings, which every language reads.
public struct JSONEventCoder: EventCoder {
    public var contentType: String { "application/json" }
    // Made once: Foundation's coders are safe to share between tasks once configured.
    private let encoder: JSONEncoder
    private let decoder: JSONDecoder

    /// A coder with ISO 8601 dates.
    public init() {
        encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
    }

    /// `event` as JSON.
    public func encode<Event: Encodable>(_ event: Event) throws -> [UInt8] {
        Array(try encoder.encode(event))
    }

    /// The event of type `type` in the JSON `body`.
    public func decode<Event: Decodable>(_ type: Event.Type, from body: [UInt8]) throws -> Event {
        try decoder.decode(type, from: Data(body))
    }
}
