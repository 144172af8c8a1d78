/// The metadata keys of every log line this package writes, in one place so that operators can
/// rely on them.
package enum LoggingKeys {
    /// The connection's name (``AMQPConnection/Configuration/connectionName``).
    package static let connection = "amqp.connection"
    /// The broker the connection is on, `host:port`.
    package static let endpoint = "amqp.endpoint"
    package static let channel = "amqp.channel"
    package static let consumerTag = "amqp.consumer_tag"
    package static let queue = "amqp.queue"
    /// The new name of a server-named queue that a recovery declared again.
    package static let newQueue = "amqp.new_queue"
    package static let exchange = "amqp.exchange"
    package static let routingKey = "amqp.routing_key"
    package static let error = "amqp.error"
    package static let replyCode = "amqp.reply_code"
    package static let replyText = "amqp.reply_text"
    /// A method the client did not expect, as `class.method`.
    package static let method = "amqp.method"
    /// Why the broker blocked the connection.
    package static let blockedReason = "amqp.reason"
    /// The number of a recovery attempt, from 1.
    package static let attempt = "amqp.attempt"
    package static let heartbeat = "amqp.heartbeat"
    package static let frameMax = "amqp.frame_max"
    package static let channelMax = "amqp.channel_max"
    /// How many lines of the same kind were left out since the last one (see ``LogRateLimiter``).
    package static let suppressed = "amqp.suppressed"
    /// How long code on the connection's task executor held its I/O thread.
    package static let heldFor = "amqp.held_for"

    // The event layer's (AMQPEvents)
    package static let messageID = "amqp.events.message_id"
    package static let eventType = "amqp.events.type"
    package static let eventTypes = "amqp.events.types"
    package static let delay = "amqp.events.delay"
    package static let reason = "amqp.events.reason"
    package static let retryAt = "amqp.events.retry_at"
    package static let count = "amqp.events.count"
    package static let subscriptions = "amqp.events.subscriptions"
    package static let services = "amqp.events.services"
}
