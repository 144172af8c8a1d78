import CoreMetrics

/// OpenTelemetry's messaging instruments (semantic conventions 1.44) for one connection, through
/// swift-metrics. The message counters are kept by the I/O thread, which adds up a batch of
/// frames or commands and reports it once; the duration timers are one object each, made up front.
final class MessagingMetrics: Sendable {
    let factory: any MetricsFactory
    /// `messaging.client.operation.duration` of a publish until the broker's confirm.
    let publishDuration: Timer
    /// `messaging.process.duration`, around ``AMQPDelivery/withProcessingSpan(relation:_:)``.
    let processDuration: Timer

    init(factory: any MetricsFactory) {
        self.factory = factory
        publishDuration = Timer(
            label: "messaging.client.operation.duration",
            dimensions: [("messaging.system", "rabbitmq"), ("messaging.operation.name", "publish")], factory: factory)
        processDuration = Timer(
            label: "messaging.process.duration",
            dimensions: [("messaging.system", "rabbitmq"), ("messaging.operation.name", "process")], factory: factory)
    }
}

/// The I/O thread's tally of messages sent and consumed per destination, reported once per batch
/// as `messaging.client.sent.messages` and `messaging.client.consumed.messages`.
struct MessageCounts {
    private var sent: [String: Int] = [:]
    private var consumed: [String: Int] = [:]
    private var counters: [String: Counter] = [:]

    mutating func published(to exchange: String) {
        sent[MessagingSpan.exchangeName(exchange), default: 0] += 1
    }

    mutating func consumed(from queue: String?) {
        consumed[queue ?? "", default: 0] += 1
    }

    /// Reports what was counted since the last report.
    mutating func report(to metrics: MessagingMetrics) {
        guard !sent.isEmpty || !consumed.isEmpty else { return }
        for (destination, count) in sent {
            counter("messaging.client.sent.messages", "publish", destination, metrics).increment(by: count)
        }
        for (destination, count) in consumed {
            counter("messaging.client.consumed.messages", "process", destination, metrics).increment(by: count)
        }
        sent.removeAll(keepingCapacity: true)
        consumed.removeAll(keepingCapacity: true)
    }

    private mutating func counter(
        _ label: String, _ operation: String, _ destination: String, _ metrics: MessagingMetrics
    ) -> Counter {
        let key = label + "\u{0}" + destination
        if let counter = counters[key] { return counter }
        let counter = Counter(
            label: label,
            dimensions: [
                ("messaging.system", "rabbitmq"), ("messaging.operation.name", operation),
                ("messaging.destination.name", destination),
            ],
            factory: metrics.factory)
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
