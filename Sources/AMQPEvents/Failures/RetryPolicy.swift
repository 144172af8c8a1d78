/// How a subscription tries again when a handler throws: a few immediate retries in the process,
/// then delayed retries held by the broker, then the parking lot.
///
/// Delayed retries wait in delay queues (`<queue>.retry.1`, `.retry.2`, …: a message TTL, and
/// dead-lettering back to the subscription's queue), declared with the subscription and declared
/// again when the connection recovers. The broker keeps them, so a restart of the service loses
/// nothing; they need no plugin, and work on RabbitMQ 3.x and 4.x, with classic and quorum queues.
/// The attempt travels in the `x-retry-attempt` header.
///
/// ```swift
/// let email = EventSubscription.publishSubscribe(exchange: "orders", service: "email")
///     .retrying(.exponential(immediateRetries: 1, first: .seconds(1), steps: 4))  // 1 s, 2 s, 4 s, 8 s
/// ```
public struct RetryPolicy: Sendable, Hashable {
    /// Tries again at once, in the process, this many times (per delivery).
    public var immediateRetries: Int
    /// Then tries again after each of these delays, held by the broker.
    public var delays: [Duration]
    /// Spreads each delay by up to this fraction either way (0.2: ±20 %), so that events that
    /// failed together do not all come back together.
    public var jitter: Double

    /// A policy of `immediateRetries` (at least 0), then one delayed retry per element of
    /// `delays`; `jitter` is kept within 0...0.9.
    public init(immediateRetries: Int = 2, delays: [Duration] = [], jitter: Double = 0.2) {
        self.immediateRetries = max(0, immediateRetries)
        self.delays = delays
        self.jitter = min(max(jitter, 0), 0.9)
    }

    /// Delays that grow by `multiplier`: `first`, `first × multiplier`, … (`steps` of them).
    public static func exponential(
        immediateRetries: Int = 1, first: Duration, multiplier: Double = 2, steps: Int, jitter: Double = 0.2
    ) -> RetryPolicy {
        var delays: [Duration] = []
        var delay = first
        for _ in 0..<max(0, steps) {
            delays.append(delay)
            delay = delay * multiplier
        }
        return RetryPolicy(immediateRetries: immediateRetries, delays: delays, jitter: jitter)
    }

    /// Two immediate retries, then the parking lot: the default.
    public static let immediate = RetryPolicy()

    /// No retry: a failure goes to the parking lot at once.
    public static let none = RetryPolicy(immediateRetries: 0)

    /// Every handler call a message gets before it is parked.
    public var maximumAttempts: Int { (1 + immediateRetries) * (1 + delays.count) }

    /// The delay before delayed retry `step` (1-based), with jitter drawn by `random` (0...1).
    func delay(beforeStep step: Int, random: Double) -> Duration {
        let base = delays[step - 1]
        return base * (1 + jitter * (2 * random - 1))
    }

    /// The delay queue's TTL: the longest a message may wait in it.
    func maximumDelay(step: Int) -> Duration {
        delays[step - 1] * (1 + jitter)
    }
}

/// An error that retrying cannot fix (a validation failure): the message goes to the parking lot
/// at once. Conform your error types, or wrap an error in ``DoNotRetry``.
public protocol NonRetryableError: Error {}

/// Wraps an error to say that retrying cannot fix it.
public struct DoNotRetry: NonRetryableError, CustomStringConvertible {
    /// The error that retrying cannot fix.
    public var underlying: any Error
    /// Marks `underlying` as an error that retrying cannot fix.
    public init(_ underlying: any Error) { self.underlying = underlying }
    public var description: String { "\(underlying)" }
}
