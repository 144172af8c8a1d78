// Reporting metrics from the I/O thread: what a batch counted, once per batch; the gauges at
// most once a second, and when the connection is lost, recovered or closed.

extension IOLoop {
    static let gaugeSampleInterval = Duration.seconds(1)

    func reportMetrics(_ metrics: MessagingMetrics, sampleGauges: Bool = false) {
        messageCounts.report(to: metrics)
        healthCounts.report(to: metrics.health)
        if sampleGauges { reportGauges(metrics) }
    }

    /// Samples the gauges once a second, busy or idle (the loop wakes for it).
    func reportGaugesIfDue(_ metrics: MessagingMetrics) {
        if ContinuousClock.now >= nextGaugeSample { reportGauges(metrics) }
    }

    private func reportGauges(_ metrics: MessagingMetrics) {
        nextGaugeSample = .now + Self.gaugeSampleInterval
        healthCounts.report(currentGauges(), to: metrics.health)
    }

    /// Open connections and channels, and what waits in buffers, as of now.
    private func currentGauges() -> ClientHealthCounts.Gauges {
        var gauges = ClientHealthCounts.Gauges()
        guard !finished else { return gauges }  // a closed connection has nothing open or waiting
        gauges.connections = connection != nil && !recovering ? 1 : 0
        gauges.publishBufferBytes = core.publishBufferBytes
        for channel in channels.values where channel.lifecycle.isOpen {
            gauges.channels += 1
            for record in channel.consumers.values { gauges.bufferedDeliveries += record.stream.bufferedCount }
        }
        if recovering { gauges.channels = 0 }
        return gauges
    }

    /// The broker blocked publishing (with its reason) or unblocked it (`nil`).
    func setBlocked(_ reason: String?) {
        if let reason {
            if blockedSince == nil { blockedSince = .now }
            core.setBlocked(reason)
            return
        }
        guard let since = blockedSince else { return }
        blockedSince = nil
        core.setBlocked(nil)
        core.metrics?.health.blockedDuration.record(since.duration(to: .now))
    }
}
