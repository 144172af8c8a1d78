import CoreMetrics
import Synchronization

/// OpenTelemetry's messaging instruments (semantic conventions 1.44) and the client's health
/// instruments (``ClientHealthMetrics``) for one connection, through swift-metrics. The counters
/// are kept by the I/O thread, which adds up a batch of frames or commands and reports it once;
/// the timers are made up front.
final class MessagingMetrics: Sendable {
    let factory: any MetricsFactory
    /// `messaging.client.operation.duration` of a publish until the broker's confirm.
    let publishDuration: Timer
    /// `messaging.process.duration`, around ``AMQPDelivery/withProcessingSpan(relation:_:)``.
    let processDuration: Timer
    let health: ClientHealthMetrics
    /// The same timers with an `error.type`, made the first time an error of that type happens.
    private let failedDurations = Mutex<[String: Timer]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
        publishDuration = Timer(label: Self.operationDuration, dimensions: Self.dimensions("publish"), factory: factory)
        processDuration = Timer(label: Self.processDurationLabel, dimensions: Self.dimensions("process"), factory: factory)
        health = ClientHealthMetrics(factory: factory)
    }

    static let operationDuration = "messaging.client.operation.duration"
    static let processDurationLabel = "messaging.process.duration"

    static func dimensions(_ operation: String, errorType: String? = nil) -> [(String, String)] {
        var dimensions = [("messaging.system", "rabbitmq"), ("messaging.operation.name", operation)]
        if let errorType { dimensions.append(("error.type", errorType)) }
        return dimensions
    }

    /// The publish-to-confirm time, with the error's code as `error.type` when it failed.
    func recordPublish(_ duration: Duration, error: AMQPError?) {
        guard let error else { return publishDuration.record(duration) }
        failedTimer(Self.operationDuration, "publish", errorType: "\(error.code)").record(duration)
    }

    /// The processing time, with the error's type as `error.type` when the handler threw.
    func recordProcess(_ duration: Duration, error: (any Error)?) {
        guard let error else { return processDuration.record(duration) }
        failedTimer(Self.processDurationLabel, "process", errorType: Self.errorType(error)).record(duration)
    }

    /// `error.type`: an ``AMQPError``'s code, or the error's type name.
    static func errorType(_ error: any Error) -> String {
        (error as? AMQPError).map { "\($0.code)" } ?? "\(type(of: error))"
    }

    private func failedTimer(_ label: String, _ operation: String, errorType: String) -> Timer {
        failedDurations.withLock { timers in
            let key = label + "\u{0}" + errorType
            if let timer = timers[key] { return timer }
            let timer = Timer(label: label, dimensions: Self.dimensions(operation, errorType: errorType), factory: factory)
            timers[key] = timer
            return timer
        }
    }
}

/// The I/O thread's tally of messages sent and consumed per destination, reported once per batch
/// as `messaging.client.sent.messages` and `messaging.client.consumed.messages`.
struct MessageCounts {
    private struct Key: Hashable {
        var destination: String
        var errorType: String?
    }

    private struct CounterKey: Hashable {
        var consumed: Bool
        var key: Key
    }

    private var sent: [Key: Int] = [:]
    private var consumed: [String: Int] = [:]
    /// Made once per instrument and dimensions, then reused.
    private var counters: [CounterKey: Counter] = [:]

    mutating func published(to exchange: String) {
        sent[Key(destination: MessagingSpan.exchangeName(exchange)), default: 0] += 1
    }

    /// A publish that could not be sent (its channel or connection closed first).
    mutating func failedToPublish(to exchange: String, _ error: AMQPError) {
        sent[Key(destination: MessagingSpan.exchangeName(exchange), errorType: "\(error.code)"), default: 0] += 1
    }

    mutating func consumed(from queue: String?) {
        consumed[queue ?? "", default: 0] += 1
    }

    /// Reports what was counted since the last report.
    mutating func report(to metrics: MessagingMetrics) {
        guard !sent.isEmpty || !consumed.isEmpty else { return }
        for (key, count) in sent {
            counter(CounterKey(consumed: false, key: key), metrics).increment(by: count)
        }
        for (destination, count) in consumed {
            counter(CounterKey(consumed: true, key: Key(destination: destination)), metrics).increment(by: count)
        }
        sent.removeAll(keepingCapacity: true)
        consumed.removeAll(keepingCapacity: true)
    }

    private mutating func counter(_ key: CounterKey, _ metrics: MessagingMetrics) -> Counter {
        if let counter = counters[key] { return counter }
        var dimensions = MessagingMetrics.dimensions(key.consumed ? "process" : "publish")
        dimensions.append(("messaging.destination.name", key.key.destination))
        if let errorType = key.key.errorType { dimensions.append(("error.type", errorType)) }
        let label = key.consumed ? "messaging.client.consumed.messages" : "messaging.client.sent.messages"
        let counter = Counter(label: label, dimensions: dimensions, factory: metrics.factory)
        counters[key] = counter
        return counter
    }
}

extension Timer {
    /// Records a `Duration`, in nanoseconds.
    func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
