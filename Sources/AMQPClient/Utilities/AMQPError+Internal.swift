// The errors the client makes itself; those made from librabbitmq's statuses are in
// LibRabbitMQ/AMQPError+LibRabbitMQ.swift.

extension AMQPError {
    static func invalidArgument(_ message: String) -> AMQPError {
        AMQPError(code: .invalidArgument, message: message)
    }

    static func channelClosedByApplication(_ channel: UInt16) -> AMQPError {
        AMQPError(code: .channelClosed, message: "channel \(channel) was closed by the application")
    }

    /// A wait ended by the task's cancellation (see ``CancellableContinuation``).
    static let cancelledWait = AMQPError(code: .cancelled, message: "the task was cancelled while it waited")

    static let connectionClosedByApplication = AMQPError(
        code: .connectionClosed,
        message: "the connection was closed by the application"
    )

    /// Checks that a value fits an AMQP short string (at most 255 bytes of UTF-8).
    static func checkShortString(_ value: String, _ what: @autoclosure () -> String) throws(AMQPError) {
        if value.utf8.count > 255 {
            throw .invalidArgument("\(what()) is \(value.utf8.count) bytes long; AMQP allows at most 255")
        }
    }

    /// The channel or connection closed before the broker confirmed a publish.
    static func outcomeUnknown(_ cause: AMQPError) -> AMQPError {
        AMQPError(
            code: .outcomeUnknown,
            message: "the channel closed before the broker confirmed the message: \(cause.message)",
            replyCode: cause.replyCode, replyText: cause.replyText)
    }

    /// Continuations only throw `AMQPError`s; this turns the `any Error` they are typed with back
    /// (and, for the event layer, an error its client calls threw).
    package static func wrap(_ error: any Error) -> AMQPError {
        (error as? AMQPError) ?? AMQPError(code: .library, message: "\(error)")
    }

    /// A call got no reply in time; its channel closes.
    static func callTimedOut(channel: UInt16, after limit: Duration) -> AMQPError {
        AMQPError(
            code: .timedOut,
            message: "the broker did not answer within \(limit) on channel \(channel); the channel is closed")
    }

    /// The broker broke the protocol; the connection cannot go on.
    static func protocolViolation(_ violation: ProtocolViolation) -> AMQPError {
        AMQPError(
            code: .protocolError, message: "the broker broke the AMQP protocol: \(violation.description)",
            replyCode: violation.replyCode, replyText: violation.replyText)
    }
}
