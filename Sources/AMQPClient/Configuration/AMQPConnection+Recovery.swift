extension AMQPConnection.Configuration {
    /// The address of one broker.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// The broker's host name or IP address.
        public var host: String
        /// The broker's TCP port.
        public var port: Int

        /// A broker at `host` and `port`.
        public init(host: String, port: Int = 5672) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Automatic recovery: what a connection does when it is lost without the application asking
    /// (a socket error, missed heartbeats, a broker restart, a connection closed from the broker).
    ///
    /// A recovering connection reconnects with exponential backoff and jitter, trying each of
    /// ``AMQPConnection/Configuration/endpoints`` in turn, and then restores, in this order:
    /// its channels (same numbers, with their prefetch and confirm mode), the exchanges, queues
    /// and bindings declared through it, and its consumers (same tags). Your ``AMQPChannel`` and
    /// ``AMQPConsumer`` values keep working: consumer sequences continue rather than end.
    ///
    /// While it recovers, calls and publishes wait (publishes up to
    /// ``AMQPConnection/Configuration/publishBufferLimit``) and go out once it is back. What was
    /// in flight at the loss does not wait: pending calls throw ``AMQPError/Code/connectionLost``,
    /// and publishes awaiting a confirm throw ``AMQPError/Code/outcomeUnknown`` unless
    /// ``republishUnconfirmed`` is set. Deliveries received before the loss are redelivered by
    /// the broker; settling one of them afterwards does nothing.
    ///
    /// A failed first ``AMQPConnection/connect(to:logger:tracer:metricsFactory:)`` is not retried:
    /// it throws.
    public struct Recovery: Sendable, Hashable {
        /// Whether to recover at all. Default: `true`.
        public var isEnabled: Bool
        /// The wait before the first reconnect attempt; it doubles after each failed attempt.
        /// Each wait is picked at random between half of it and all of it, so that many clients
        /// do not reconnect in lockstep. Default: 500 ms.
        public var initialDelay: Duration
        /// The longest wait between attempts. Default: 30 seconds.
        public var maximumDelay: Duration
        /// How many attempts to make before the connection gives up and closes with the last
        /// error; `nil` keeps trying. Attempts count across recoveries that did not last (see
        /// ``backoffResetAfter``). Default: `nil`.
        public var maximumAttempts: Int?
        /// The longest one attempt may take as a whole: connecting, logging in, and restoring
        /// channels, topology and consumers. A broker that answers just before each step's
        /// deadline cannot stretch an attempt past it. Default: 30 seconds.
        public var attemptTimeout: Duration
        /// How long a recovered connection must stay up for the next recovery to start its
        /// backoff afresh. One lost sooner counts as one more failed attempt, so a broker that
        /// breaks every connection right after it recovered meets a delay that keeps growing to
        /// ``maximumDelay``, not a login every ``initialDelay``. Default: 30 seconds.
        public var backoffResetAfter: Duration
        /// Publish again, after recovery and in their original order, the messages whose confirm
        /// was pending at the loss, instead of failing them with ``AMQPError/Code/outcomeUnknown``.
        /// Their ``AMQPPublishConfirmation`` then reports the new publish's outcome: at least once,
        /// so a consumer may see such a message twice. The connection keeps every unconfirmed
        /// message's body until it is confirmed. Default: `false`.
        public var republishUnconfirmed: Bool

        /// Recovery settings; every one left out keeps its default.
        public init(
            isEnabled: Bool = true,
            initialDelay: Duration = .milliseconds(500),
            maximumDelay: Duration = .seconds(30),
            maximumAttempts: Int? = nil,
            attemptTimeout: Duration = .seconds(30),
            backoffResetAfter: Duration = .seconds(30),
            republishUnconfirmed: Bool = false
        ) {
            self.attemptTimeout = attemptTimeout
            self.backoffResetAfter = backoffResetAfter
            self.isEnabled = isEnabled
            self.initialDelay = initialDelay
            self.maximumDelay = maximumDelay
            self.maximumAttempts = maximumAttempts
            self.republishUnconfirmed = republishUnconfirmed
        }

        /// No recovery: a lost connection closes, and everything waiting on it fails.
        public static let disabled = Recovery(isEnabled: false)

        /// The wait before attempt `attempt` (counting from 1), with jitter: `jitter` is a factor
        /// in `0.5...1`, random unless a test picks it.
        func delay(beforeAttempt attempt: Int, jitter: Double = Double.random(in: 0.5...1.0)) -> Duration {
            let doublings = min(max(attempt - 1, 0), 30)
            var delay = initialDelay * (1 << doublings)
            if delay > maximumDelay || delay < .zero { delay = maximumDelay }
            return delay * min(max(jitter, 0.5), 1.0)
        }
    }
}
