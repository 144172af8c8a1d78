/// The metadata keys of every log line this package writes, in one place so that operators can
/// rely on them.
enum LoggingKeys {
    /// The connection's name (``AMQPConnection/Configuration/connectionName``).
    static let connection = "amqp.connection"
    /// The broker the connection is on, `host:port`.
    static let endpoint = "amqp.endpoint"
    static let channel = "amqp.channel"
    static let consumerTag = "amqp.consumer_tag"
    static let queue = "amqp.queue"
    /// The new name of a server-named queue that a recovery declared again.
    static let newQueue = "amqp.new_queue"
    static let exchange = "amqp.exchange"
    static let routingKey = "amqp.routing_key"
    static let error = "amqp.error"
    static let replyCode = "amqp.reply_code"
    static let replyText = "amqp.reply_text"
    /// A method the client did not expect, as `class.method`.
    static let method = "amqp.method"
    /// Why the broker blocked the connection.
    static let blockedReason = "amqp.reason"
    /// The number of a recovery attempt, from 1.
    static let attempt = "amqp.attempt"
    static let heartbeat = "amqp.heartbeat"
    static let frameMax = "amqp.frame_max"
    static let channelMax = "amqp.channel_max"
    /// How many lines of the same kind were left out since the last one (see ``LogRateLimiter``).
    static let suppressed = "amqp.suppressed"
    /// How long code on the connection's task executor held its I/O thread.
    static let heldFor = "amqp.held_for"
}
