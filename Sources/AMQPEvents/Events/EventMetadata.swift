public import AMQPClient
public import Foundation

/// What an event's message says about it besides its payload: the envelope.
///
/// It maps onto AMQP properties, so a message from any client that sets them is an event too:
/// `type` (``type``), `message_id` (``messageID``), `timestamp`, `correlation_id`, `app_id`,
/// `content_type`, and the headers `x-schema-version` and `x-causation-id`.
public struct EventMetadata: Sendable, Hashable {
    /// The event's type name (`OrderPlaced`).
    public var type: String
    /// Unique per event, kept when the event is published again: consumers deduplicate by it.
    public var messageID: String
    /// When the event was emitted (seconds precision on the wire).
    public var timestamp: Date?
    /// Ties together every event of one business transaction (an order and what it caused).
    public var correlationID: String?
    /// The ``messageID`` of the event being handled when this one was emitted.
    public var causationID: String?
    /// The payload's schema version.
    public var schemaVersion: Int
    /// The service that emitted it.
    public var appID: String?
    /// The application's own headers (the envelope's are left out).
    public var headers: AMQPFieldTable
    /// The CloudEvents `source` it came with (a CloudEvent's; ours name their service in ``appID``).
    public var source: String?
    /// What the event is about, within its source (CloudEvents `subject`; the `x-subject` header in
    /// our envelope): an order id, say, for consumers that filter without decoding.
    public var subject: String?
    /// The envelope it arrived in (see ``EventEnvelope``).
    public var envelope: EventEnvelope = .amqp

    /// The envelope of an event of type `type`: a fresh message id and the current time unless
    /// given, schema version 1, in our envelope.
    public init(
        type: String, messageID: String = UUID().uuidString, timestamp: Date? = Date(), correlationID: String? = nil,
        causationID: String? = nil, schemaVersion: Int = 1, appID: String? = nil, headers: AMQPFieldTable = [:],
        subject: String? = nil
    ) {
        self.subject = subject
        self.type = type
        self.messageID = messageID
        self.timestamp = timestamp
        self.correlationID = correlationID
        self.causationID = causationID
        self.schemaVersion = schemaVersion
        self.appID = appID
        self.headers = headers
    }
}

/// The header names of the envelope.
enum EnvelopeHeader {
    static let schemaVersion = "x-schema-version"
    static let causationID = "x-causation-id"
    static let subject = "x-subject"
    /// Why a message was parked, and where it came from (see ``EventSubscription``).
    static let parkedReason = "x-parked-reason"
    static let parkedError = "x-parked-error"
    static let parkedFromQueue = "x-parked-from-queue"
    static let parkedAt = "x-parked-at"
    static let originalExchange = "x-original-exchange"
    static let originalRoutingKey = "x-original-routing-key"
    /// Retries: how many delayed retries a message has had, and when and why it failed.
    static let retryAttempt = "x-retry-attempt"
    static let attempts = "x-attempts"
    static let firstFailureAt = "x-first-failure-at"
    static let lastFailureAt = "x-last-failure-at"
    static let lastError = "x-last-error"
    /// A reply's failure (request/reply): the responder's error, as text.
    static let replyError = "x-reply-error"

    // Set by RabbitMQ
    /// How many times a quorum queue delivered the message before.
    static let deliveryCount = "x-delivery-count"
    /// The dead-lettering history.
    static let death = "x-death"
    static let firstDeathExchange = "x-first-death-exchange"
    static let firstDeathQueue = "x-first-death-queue"
    static let firstDeathReason = "x-first-death-reason"
    static let lastDeathExchange = "x-last-death-exchange"
    static let lastDeathQueue = "x-last-death-queue"
    static let lastDeathReason = "x-last-death-reason"
}

extension EventMetadata {
    /// The envelope as AMQP properties (persistent; the coder's content type).
    func properties(contentType: String) -> AMQPProperties {
        var headers = self.headers
        headers[EnvelopeHeader.schemaVersion] = .int32(Int32(clamping: schemaVersion))
        if let causationID { headers[EnvelopeHeader.causationID] = .string(causationID) }
        if let subject { headers[EnvelopeHeader.subject] = .string(subject) }
        return AMQPProperties(
            contentType: contentType, headers: headers, deliveryMode: .persistent, correlationID: correlationID,
            messageID: messageID, timestamp: timestamp, type: type, appID: appID)
    }

    /// The envelope of a received message; `nil` without a `type` (then it names no event).
    init?(_ properties: AMQPProperties) {
        guard let type = properties.type, !type.isEmpty else { return nil }
        var headers = properties.headers ?? [:]
        let version = headers.values.removeValue(forKey: EnvelopeHeader.schemaVersion).flatMap(\.integerValue) ?? 1
        let causation: String? =
            switch headers.values.removeValue(forKey: EnvelopeHeader.causationID) {
            case .string(let value): value
            case .bytes(let bytes): String(decoding: bytes, as: UTF8.self)
            default: nil
            }
        let subject = headers.values.removeValue(forKey: EnvelopeHeader.subject)?.text
        self.init(
            type: type, messageID: properties.messageID ?? "", timestamp: properties.timestamp,
            correlationID: properties.correlationID, causationID: causation, schemaVersion: version,
            appID: properties.appID, headers: headers)
        self.subject = subject
    }
}

