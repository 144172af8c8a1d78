import CoreMetrics

/// The instruments an operator watches to see whether a client is healthy, all under
/// `amqp.client.` (see the *Observability* article for what each means). Made once per connection;
/// several connections report into the same metrics, which add up.
final class ClientHealthMetrics: Sendable {
    static let prefix = "amqp.client."

    let connections: Meter
    let channels: Meter
    let confirmsAcked: Counter
    let confirmsNacked: Counter
    let returned: Counter
    let redelivered: Counter
    let acks: Counter
    let nacks: Counter
    let rejects: Counter
    let recoveries: Counter
    let recoveryAttemptsSucceeded: Counter
    let recoveryAttemptsFailed: Counter
    let blockedDuration: Timer
    let publishBufferBytes: Meter
    let bufferedDeliveries: Meter

    init(factory: any MetricsFactory) {
        func name(_ suffix: String) -> String { Self.prefix + suffix }
        connections = Meter(label: name("connections"), dimensions: [], factory: factory)
        channels = Meter(label: name("channels"), dimensions: [], factory: factory)
        confirmsAcked = Counter(label: name("confirms"), dimensions: [("amqp.confirm.outcome", "ack")], factory: factory)
        confirmsNacked = Counter(label: name("confirms"), dimensions: [("amqp.confirm.outcome", "nack")], factory: factory)
        returned = Counter(label: name("returned.messages"), dimensions: [], factory: factory)
        redelivered = Counter(label: name("redelivered.messages"), dimensions: [], factory: factory)
        acks = Counter(label: name("settlements"), dimensions: [("amqp.settlement.type", "ack")], factory: factory)
        nacks = Counter(label: name("settlements"), dimensions: [("amqp.settlement.type", "nack")], factory: factory)
        rejects = Counter(label: name("settlements"), dimensions: [("amqp.settlement.type", "reject")], factory: factory)
        recoveries = Counter(label: name("recoveries"), dimensions: [], factory: factory)
        recoveryAttemptsSucceeded = Counter(
            label: name("recovery.attempts"), dimensions: [("amqp.recovery.outcome", "success")], factory: factory)
        recoveryAttemptsFailed = Counter(
            label: name("recovery.attempts"), dimensions: [("amqp.recovery.outcome", "failure")], factory: factory)
        blockedDuration = Timer(label: name("blocked.duration"), dimensions: [], factory: factory)
        publishBufferBytes = Meter(label: name("publish_buffer.bytes"), dimensions: [], factory: factory)
        bufferedDeliveries = Meter(label: name("consumer_buffer.deliveries"), dimensions: [], factory: factory)
    }
}

/// The I/O thread's tally of health events since the last report, and the gauges it last
/// reported. Gauges are reported as changes, so that several connections add up in one meter.
struct ClientHealthCounts {
    var confirmsAcked = 0
    var confirmsNacked = 0
    var returned = 0
    var redelivered = 0
    var acks = 0
    var nacks = 0
    var rejects = 0

    /// The gauges' values as this connection last reported them.
    struct Gauges: Equatable {
        var connections = 0
        var channels = 0
        var publishBufferBytes = 0
        var bufferedDeliveries = 0
    }

    private(set) var reportedGauges = Gauges()

    mutating func settled(_ method: ClientMethod) {
        switch method {
        case .basicAck: acks += 1
        case .basicNack: nacks += 1
        case .basicReject: rejects += 1
        default: break
        }
    }

    /// Reports the counts since the last report.
    mutating func report(to metrics: ClientHealthMetrics) {
        func flush(_ count: inout Int, _ counter: Counter) {
            guard count > 0 else { return }
            counter.increment(by: count)
            count = 0
        }
        flush(&confirmsAcked, metrics.confirmsAcked)
        flush(&confirmsNacked, metrics.confirmsNacked)
        flush(&returned, metrics.returned)
        flush(&redelivered, metrics.redelivered)
        flush(&acks, metrics.acks)
        flush(&nacks, metrics.nacks)
        flush(&rejects, metrics.rejects)
    }

    /// Reports the gauges' new values as changes from the last reported ones.
    mutating func report(_ gauges: Gauges, to metrics: ClientHealthMetrics) {
        guard gauges != reportedGauges else { return }
        func move(_ meter: Meter, from old: Int, to new: Int) {
            if new > old { meter.increment(by: Double(new - old)) } else if new < old { meter.decrement(by: Double(old - new)) }
        }
        move(metrics.connections, from: reportedGauges.connections, to: gauges.connections)
        move(metrics.channels, from: reportedGauges.channels, to: gauges.channels)
        move(metrics.publishBufferBytes, from: reportedGauges.publishBufferBytes, to: gauges.publishBufferBytes)
        move(metrics.bufferedDeliveries, from: reportedGauges.bufferedDeliveries, to: gauges.bufferedDeliveries)
        reportedGauges = gauges
    }
}
