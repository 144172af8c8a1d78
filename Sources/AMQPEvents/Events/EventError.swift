public import AMQPClient

/// The one error type of `AMQPEvents`. Match on ``code``; a failure of the client underneath is in
/// ``underlying``.
public struct EventError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added in later releases, so `switch` over
    /// it with a `default` case.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The event could not be encoded.
        public static let encodingFailed = Code("encodingFailed")
        /// A message's body did not decode as the event its type names.
        public static let decodingFailed = Code("decodingFailed")
        /// A message's type has no handler here.
        public static let unknownEventType = Code("unknownEventType")
        /// A message's schema version is newer than its handler's event type reads.
        public static let unsupportedSchemaVersion = Code("unsupportedSchemaVersion")
        /// A handler kept failing through every retry of its subscription's ``RetryPolicy``.
        public static let retriesExhausted = Code("retriesExhausted")
        /// A handler threw a ``NonRetryableError``.
        public static let nonRetryable = Code("nonRetryable")
        /// The broker did not take the event: refused (nack), unroutable (returned), or the channel
        /// or connection failed; see ``underlying``.
        public static let publishFailed = Code("publishFailed")
        /// Declaring the topology, opening a channel or consuming failed; see ``underlying``.
        public static let brokerFailed = Code("brokerFailed")
        /// No reply came within the request's timeout.
        public static let timedOut = Code("timedOut")
        /// No queue takes the request: no responder has declared it.
        public static let noResponder = Code("noResponder")
        /// The responder's handler threw; ``message`` has its error.
        public static let responderFailed = Code("responderFailed")
        /// The application passed something unusable (say, a concurrency of 0).
        public static let invalidArgument = Code("invalidArgument")
        /// The ``EventBus`` was closed (``EventBus/close()``) or released: it publishes and
        /// requests no more, and the requests that were waiting for a reply failed.
        public static let closed = Code("closed")
    }

    /// What kind of failure this is.
    public var code: Code
    /// A readable explanation. It may quote the broker, a message or a responder's error
    /// unescaped: print ``description`` rather than this.
    public var message: String
    /// The client's error, when one caused this.
    public var underlying: AMQPError?

    /// An error of kind `code`, caused by the client's `underlying` error if there is one.
    public init(code: Code, message: String, underlying: AMQPError? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// The error for a person, fit for a terminal: the message escaped (and bounded) as
    /// `AMQPError`'s description escapes the broker's text, so that neither the broker nor a
    /// message can drive the terminal or forge lines.
    public var description: String {
        var text = "EventError.\(code): \(LogText.escaped(message, limit: 1024))"
        // The underlying error's description is escaped already.
        if let underlying { text += " (\(underlying))" }
        return text
    }

    static let busClosed = EventError(code: .closed, message: "the event bus is closed")

    static func broker(_ what: String, _ error: AMQPError) -> EventError {
        EventError(code: .brokerFailed, message: "\(what): \(error.message)", underlying: error)
    }
}
