import Foundation

/// The event of the `user_events` samples: `{"type":"USER_REGISTERED","data":{"userId":12345}}`.
public struct UserEvent: Codable, Sendable, Equatable {
    public struct Payload: Codable, Sendable, Equatable {
        public var userId: Int
    }

    public var type: String
    public var data: Payload

    public static let queue = "user_events"
    public static let registered = "USER_REGISTERED"

    public static func registered(userId: Int) -> UserEvent {
        UserEvent(type: registered, data: Payload(userId: userId))
    }

    /// The event as compact JSON, keys in the order the seed's producer writes them.
    public var json: String {
        let typeJSON = String(decoding: try! JSONEncoder().encode(type), as: UTF8.self)
        return #"{"type":\#(typeJSON),"data":{"userId":\#(data.userId)}}"#
    }

    /// Decodes an event, or returns `nil` when the body is not one.
    public init?(json body: [UInt8]) {
        guard let event = try? JSONDecoder().decode(UserEvent.self, from: Data(body)) else { return nil }
        self = event
    }

    public init(type: String, data: Payload) {
        self.type = type
        self.data = data
    }
}
