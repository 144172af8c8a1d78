/// The one error type thrown by this package.
///
/// Match on ``code`` to decide what to do; read ``description`` for a person.
/// Broker-reported failures also carry the AMQP ``replyCode`` and ``replyText``
/// (for example `404 NOT_FOUND`). No error ever contains a password.
///
/// ``message`` and ``replyText`` hold what the broker sent as it sent it, to match on;
/// ``description`` escapes it (control characters, line breaks, bidi controls), so that printing
/// an error cannot let a broker drive the terminal or forge lines.
public struct AMQPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. New codes may be added in later releases, so
    /// `switch` over it with a `default` case.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate enum Backing: String, Sendable, Hashable {
            case invalidArgument
            case connectionFailed
            case connectTimeout
            case authenticationFailed
            case accessRefused
            case channelClosed
            case connectionClosed
            case connectionLost
            case consumerCancelled
            case publishNacked
            case messageReturned
            case outcomeUnknown
            case protocolError
            case timedOut
            case tlsFailed
            case cancelled
            case library
        }

        fileprivate let backing: Backing

        /// The caller passed something AMQP cannot carry: a malformed URI, a name over
        /// 255 bytes, an out-of-range value. Nothing was sent.
        public static let invalidArgument = Code(backing: .invalidArgument)
        /// The TCP connection could not be made: the host is unknown, unreachable, or
        /// refused the connection.
        public static let connectionFailed = Code(backing: .connectionFailed)
        /// The TCP connection or the AMQP handshake did not finish within the configured timeout.
        public static let connectTimeout = Code(backing: .connectTimeout)
        /// The broker refused the user name or password (403 ACCESS_REFUSED during login).
        public static let authenticationFailed = Code(backing: .authenticationFailed)
        /// The user may not use the virtual host, or an operation was refused for lack
        /// of permission (530 NOT_ALLOWED, 403 ACCESS_REFUSED on a channel).
        public static let accessRefused = Code(backing: .accessRefused)
        /// The channel is closed: by the broker because of an error (see ``AMQPError/replyCode``),
        /// or by the application. The connection and its other channels keep working.
        public static let channelClosed = Code(backing: .channelClosed)
        /// The connection is closed: by the application, or by the broker with a reply code
        /// (for example 320 CONNECTION_FORCED).
        public static let connectionClosed = Code(backing: .connectionClosed)
        /// The connection failed underneath: the socket broke or the broker stopped answering
        /// heartbeats.
        public static let connectionLost = Code(backing: .connectionLost)
        /// The broker cancelled a consumer, for example because its queue was deleted.
        public static let consumerCancelled = Code(backing: .consumerCancelled)
        /// The broker refused a published message (`basic.nack`): it was not taken.
        public static let publishNacked = Code(backing: .publishNacked)
        /// The broker returned a `mandatory` message because no queue would take it (312 NO_ROUTE);
        /// see ``AMQPError/replyCode``.
        public static let messageReturned = Code(backing: .messageReturned)
        /// The channel or connection closed before the broker confirmed a publish: it may or may
        /// not have been taken.
        public static let outcomeUnknown = Code(backing: .outcomeUnknown)
        /// The broker sent something that breaks the AMQP protocol (an unknown frame type, a frame
        /// on a channel the client never opened, a message larger than
        /// ``AMQPConnection/Configuration/maximumMessageSize``, tables nested too deeply…). The
        /// connection was closed before anything acted on it, and recovers like any lost one;
        /// ``AMQPError/replyCode`` names the violation (501 FRAME_ERROR, 502 SYNTAX_ERROR,
        /// 503 COMMAND_INVALID, 504 CHANNEL_ERROR, 505 UNEXPECTED_FRAME).
        public static let protocolError = Code(backing: .protocolError)
        /// The broker did not answer a call within ``AMQPConnection/Configuration/callTimeout``.
        /// The call's channel is closed: open a new one.
        public static let timedOut = Code(backing: .timedOut)
        /// The TLS handshake failed: the broker's certificate was refused (unknown CA, wrong name,
        /// expired), a certificate or key file could not be loaded, or the broker does not speak
        /// TLS there. The message says which. Nothing was sent to the broker.
        public static let tlsFailed = Code(backing: .tlsFailed)
        /// The task waiting (for a reply, a confirm, room to publish) was cancelled, and stopped
        /// waiting. What it had sent still goes its way: a declaration may still take effect, a
        /// publish may still be delivered.
        public static let cancelled = Code(backing: .cancelled)
        /// librabbitmq reported a status this package has no finer code for; see
        /// ``AMQPError/libraryStatus``.
        public static let library = Code(backing: .library)

        public var description: String { backing.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A readable explanation. It may quote the broker (names, texts) unescaped: print
    /// ``description`` rather than this.
    public var message: String
    /// The AMQP reply code, when the broker closed a channel or the connection (404, 406, 405, 403, 320, …).
    public var replyCode: UInt16?
    /// The broker's reply text, when it closed a channel or the connection, as it sent it:
    /// print ``description`` rather than this.
    public var replyText: String?
    /// librabbitmq's status code (a negative `amqp_status_enum` value), when the failure came from it.
    public var libraryStatus: Int32?

    /// An error of kind `code`; the broker's and librabbitmq's details are `nil` unless given.
    public init(
        code: Code,
        message: String,
        replyCode: UInt16? = nil,
        replyText: String? = nil,
        libraryStatus: Int32? = nil
    ) {
        self.code = code
        self.message = message
        self.replyCode = replyCode
        self.replyText = replyText
        self.libraryStatus = libraryStatus
    }

    /// How much of ``message`` the description shows: enough for the longest the client builds
    /// (a few quoted AMQP short strings of at most 255 bytes each).
    static let describedMessageLimit = 1024

    /// The error for a person, fit for a terminal: the message and the reply text escaped as in
    /// the client's logs, and bounded.
    public var description: String {
        render { LogText.escaped($0, limit: $1) }
    }

    /// The description as the fields hold it, for the log metadata that escapes it once itself.
    var unescapedDescription: String {
        render { text, _ in text }
    }

    /// The description, with `part` applied to each part that can hold broker text (and how much
    /// of it to keep).
    private func render(_ part: (String, Int) -> String) -> String {
        var text = "AMQPError.\(code): \(part(message, Self.describedMessageLimit))"
        if let replyCode {
            text += " (\(replyCode)"
            if let replyText { text += " \(part(replyText, LogText.limit))" }
            text += ")"
        }
        if let libraryStatus { text += " [librabbitmq status \(libraryStatus)]" }
        return text
    }
}
