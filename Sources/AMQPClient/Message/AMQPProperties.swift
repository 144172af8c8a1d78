#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// The basic properties of a message: its content type, headers, persistence,
/// correlation id and the rest of AMQP's `basic` content header.
///
/// Every property is optional; `nil` means "not sent".
public struct AMQPProperties: Sendable, Hashable {
    /// Whether the broker writes a message to disk (on a durable queue) so that it survives a restart.
    public enum DeliveryMode: UInt8, Sendable, Hashable {
        /// Kept in memory only; lost when the broker restarts.
        case transient = 1
        /// Written to disk on a durable queue; survives a broker restart.
        case persistent = 2
    }

    /// The body's MIME type, such as `application/json`.
    public var contentType: String?
    /// The body's encoding, such as `gzip`.
    public var contentEncoding: String?
    /// Application headers, and the broker's own (`x-death`, `x-stream-offset`).
    public var headers: AMQPFieldTable?
    /// Whether the message survives a broker restart; `nil` is transient.
    public var deliveryMode: DeliveryMode?
    /// 0 to 9 on a priority queue.
    public var priority: UInt8?
    /// Ties a reply to its request, or a message to others of the same conversation.
    public var correlationID: String?
    /// Where a reply goes: a queue's name, or a direct reply-to address.
    public var replyTo: String?
    /// A per-message TTL in milliseconds, as a decimal string (AMQP's wire format).
    public var expiration: String?
    /// The id the publisher gives the message; consumers use it to spot duplicates.
    public var messageID: String?
    /// One-second resolution; fractions of a second are dropped when sent.
    public var timestamp: Date?
    /// The application's name for the kind of message, such as `OrderPlaced`.
    public var type: String?
    /// When set, RabbitMQ checks it equals the connection's user name.
    public var userID: String?
    /// The application that published the message.
    public var appID: String?

    /// Properties with the given values; every one left out is not sent.
    public init(
        contentType: String? = nil,
        contentEncoding: String? = nil,
        headers: AMQPFieldTable? = nil,
        deliveryMode: DeliveryMode? = nil,
        priority: UInt8? = nil,
        correlationID: String? = nil,
        replyTo: String? = nil,
        expiration: String? = nil,
        messageID: String? = nil,
        timestamp: Date? = nil,
        type: String? = nil,
        userID: String? = nil,
        appID: String? = nil
    ) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageID = messageID
        self.timestamp = timestamp
        self.type = type
        self.userID = userID
        self.appID = appID
    }

    /// The value a stream's consumers can filter on (`x-stream-filter-value`, RabbitMQ 3.13+).
    public var streamFilterValue: String? {
        get {
            if case .string(let value) = headers?["x-stream-filter-value"] { return value }
            return nil
        }
        set {
            var headers = self.headers ?? [:]
            headers["x-stream-filter-value"] = newValue.map(AMQPFieldValue.string)
            self.headers = headers.isEmpty ? nil : headers
        }
    }

    /// `deliveryMode == .persistent`.
    public var isPersistent: Bool { deliveryMode == .persistent }

    func validate() throws(AMQPError) {
        try Self.check(contentType, "contentType")
        try Self.check(contentEncoding, "contentEncoding")
        try Self.check(correlationID, "correlationID")
        try Self.check(replyTo, "replyTo")
        try Self.check(expiration, "expiration")
        try Self.check(messageID, "messageID")
        try Self.check(type, "type")
        try Self.check(userID, "userID")
        try Self.check(appID, "appID")
        try headers?.validate("header")
    }

    private static func check(_ value: String?, _ name: StaticString) throws(AMQPError) {
        if let value { try AMQPError.checkShortString(value, "property \(name)") }
    }
}
