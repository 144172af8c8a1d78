import AMQPClient
import ArgumentParser
import CRawAMQPBench
import CoreMetrics
import Foundation
import Histogram
import InMemoryTracing
import MetricsTestKit

/// Measures the SDK side by side with the same workloads written directly against
/// librabbitmq in C, alternating SDK and C runs in one process, and reports SDK / raw C.
@main
struct AMQPBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp-bench",
        abstract: "Benchmark AMQPClient against raw librabbitmq on a local RabbitMQ.")

    @Option(help: "The broker's AMQP URI.")
    var url: String = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/"

    @Option(help: "Messages per throughput run.")
    var messages: Int = 100_000

    @Option(help: "Round trips for the latency workload.")
    var latencyMessages: Int = 10_000

    @Option(help: "Messages for the memory-growth workload (SDK only).")
    var memoryMessages: Int = 1_000_000

    @Option(help: "Alternating SDK / raw C rounds; the report shows the median.")
    var rounds: Int = 3

    @Option(help: "Run only workloads whose name starts with one of these (repeatable); a trailing $ asks for the exact name.")
    var only: [String] = []

    @Option(help: "Also write the results as JSON to this file.")
    var json: String?

    @Option(help: "Full runs of the whole bench: the report gives each row's median ratio over the runs and its spread (min-max), so that a claim comes with its noise.")
    var `repeat`: Int = 1

    @Flag(help: "A quick run that only checks every workload works (a few thousand messages).")
    var smoke = false

    @Option(help: "The CA file of the broker's TLS listener, for the tls- workloads (scripts/broker.sh makes one).")
    var tlsCA = ".broker/tls/ca.pem"

    @Option(help: "The broker's TLS port, for the tls- workloads.")
    var tlsPort = 5671

    @Flag(help: "Leave out the tls- workloads.")
    var noTLS = false

    enum Side: String, ExpressibleByArgument {
        case both, sdk
        case rawC = "c"
    }

    @Option(help: "Run both sides (both), or only the SDK's (sdk) or raw C's (c), without ratios: for profiling one side.")
    var side: Side = .both

    @Flag(help: "Give the SDK's connections an InMemoryTracer (spans on publish and processing), to measure tracing's cost.")
    var inMemoryTracer = false

    enum MetricsBackend: String, ExpressibleByArgument {
        /// No factory: the connection keeps no metrics.
        case none
        /// swift-metrics' no-op handlers: the connection counts, the backend drops it.
        case noop
        /// MetricsTestKit's TestMetrics: every value is kept, behind a lock.
        case inMemory = "in-memory"
    }

    @Option(help: "The metrics backend of the SDK's connections (none, noop, in-memory), to measure the metrics' cost.")
    var metrics: MetricsBackend = .none

    @Flag(help: "Turn off the SDK's delivery batching (Configuration.deliveryBatching = .disabled), to measure what it saves.")
    var noDeliveryBatching = false

    func run() async throws {
        var options = self
        if smoke {
            options.messages = 3_000
            options.latencyMessages = 500
            options.memoryMessages = 20_000
            options.rounds = 1
        }
        var configuration = try AMQPConnection.Configuration(url: url)
        if noDeliveryBatching { configuration.deliveryBatching = .disabled }
        if !noTLS && !FileManager.default.fileExists(atPath: tlsCA) {
            throw ValidationError("no CA file at \(tlsCA) for the tls- workloads: run scripts/broker.sh start, pass --tls-ca, or --no-tls")
        }
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        let bench = Bench(configuration: configuration, options: options)
        var runs: [Report] = []
        for run in 1...`repeat` {
            let report = try await bench.runAll()
            if `repeat` > 1 { print("run \(run) of \(`repeat`):") }
            print(report.table())
            runs.append(report)
        }
        if `repeat` > 1 {
            print("\nover \(`repeat`) runs (median of each run's ratio, and their spread):")
            print(Report.spreadTable(runs))
        }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(runs.flatMap(\.rows)).write(to: URL(fileURLWithPath: json))
            print("wrote \(json)")
        }
    }
}

struct Bench {
    let configuration: AMQPConnection.Configuration
    let options: AMQPBench

    struct Throughput {
        var name: String
        let messages: Int
        let sdk: (AMQPChannel, String) async throws -> Void
        let rawC: @Sendable (RawConnection, String) -> Int32
        /// Fills the queue before the timed part (consume workloads).
        let prefill: Int
        /// The SDK side runs with the connection's I/O thread as its task executor.
        var onIOExecutor = false
        /// Both sides connect over TLS: the SDK with its own OpenSSL session, raw C with
        /// librabbitmq's TLS socket.
        var tls = false
    }

    func throughputWorkloads(messages n: Int) -> [Throughput] {
        var workloads: [Throughput] = []
        for (label, size) in [("16B", 16), ("256B", 256), ("4KiB", 4096), ("64KiB", 65536)] {
            let count = size >= 65536 ? max(n / 10, 1) : n
            workloads.append(
                Throughput(
                    name: "publish-\(label)", messages: count,
                    sdk: { channel, queue in
                        let body = [UInt8](repeating: 0x61, count: size)
                        for _ in 0..<count { try await channel.publish(body, routingKey: queue) }
                        try await channel.declareQueue(queue, passive: true)  // everything written
                    },
                    rawC: { connection, queue in raw_bench_publish(connection.pointer, queue, size, UInt64(count)) },
                    prefill: 0))
        }
        for window in [1, 100, 1000] {
            let count = window == 1 ? max(n / 10, 1) : n
            workloads.append(
                Throughput(
                    name: "publish-confirm-window\(window)", messages: count,
                    sdk: { channel, queue in
                        try await Self.sdkPublishConfirmed(channel, queue, count: count, window: window)
                    },
                    rawC: { connection, queue in
                        raw_bench_publish_confirmed(connection.pointer, queue, 256, UInt64(count), UInt32(window))
                    },
                    prefill: 0))
        }
        let consumeCases: [(String, UInt16, UInt32, Int)] = [
            ("consume-ack-prefetch1", 1, 1, max(n / 10, 1)),
            ("consume-ack-prefetch100", 100, 1, n),
            ("consume-ack-prefetch1000", 1000, 1, n),
            ("consume-multiack50-prefetch100", 100, 50, n),
            ("consume-multiack500-prefetch1000", 1000, 500, n),
            ("consume-noack", 1000, 0, n),
        ]
        for (name, prefetch, ackEvery, count) in consumeCases {
            workloads.append(
                Throughput(
                    name: name, messages: count,
                    sdk: { channel, queue in
                        try await Self.sdkConsume(channel, queue, prefetch: prefetch, ackEvery: ackEvery, count: count)
                    },
                    rawC: { connection, queue in
                        raw_bench_consume(connection.pointer, queue, prefetch, ackEvery, UInt64(count))
                    },
                    prefill: count))
        }
        // Patterns that wait for the broker on every message, where the hand-off between the
        // I/O thread and the task dominates, once more with the task on the I/O thread.
        for name in ["publish-confirm-window1", "consume-ack-prefetch1", "consume-noack"] {
            guard var workload = workloads.first(where: { $0.name == name }) else { continue }
            workload.name += Self.ioExecutorSuffix
            workload.onIOExecutor = true
            workloads.append(workload)
        }
        // TLS: publishing, and consuming with acks at a large prefetch.
        if !options.noTLS {
            for name in ["publish-256B", "consume-ack-prefetch1000"] {
                guard var workload = workloads.first(where: { $0.name == name }) else { continue }
                workload.name = "tls-" + name
                workload.tls = true
                workloads.append(workload)
            }
        }
        return workloads
    }

    /// Keeps at most `window` publishes unconfirmed, awaiting the oldest before the next.
    static func sdkPublishConfirmed(_ channel: AMQPChannel, _ queue: String, count: Int, window: Int) async throws {
        try await channel.enablePublisherConfirms()
        let body = [UInt8](repeating: 0x61, count: 256)
        var inFlight: [AMQPPublishConfirmation] = []
        inFlight.reserveCapacity(window)
        var oldest = 0
        for _ in 0..<count {
            if inFlight.count - oldest == window {
                try await inFlight[oldest].confirmed()
                oldest += 1
                if oldest == window {
                    inFlight.removeFirst(oldest)
                    oldest = 0
                }
            }
            inFlight.append(try await channel.publish(body, routingKey: queue))
        }
        for confirmation in inFlight[oldest...] { try await confirmation.confirmed() }
    }

    static func sdkConsume(_ channel: AMQPChannel, _ queue: String, prefetch: UInt16, ackEvery: UInt32, count: Int)
        async throws
    {
        try await channel.setPrefetch(count: prefetch)
        let consumer = try await channel.consume(queue: queue, noAck: ackEvery == 0)
        var received = 0
        for try await delivery in consumer {
            received += 1
            // A processing span per delivery when the connection has a tracer; nothing otherwise.
            try await delivery.withProcessingSpan { delivery in
                if ackEvery == 1 {
                    try await delivery.ack()
                } else if ackEvery > 1 && (received % Int(ackEvery) == 0 || received == count) {
                    try await delivery.ack(multiple: true)
                }
            }
            if received == count { break }
        }
        try await consumer.cancel()
        try await channel.declareQueue(queue, passive: true)  // every ack written
    }

    func included(_ name: String) -> Bool {
        options.only.isEmpty
            || options.only.contains { $0.hasSuffix("$") ? name == $0.dropLast() : name.hasPrefix($0) }
    }

    func runAll() async throws -> Report {
        var report = Report()
        let setup = try await AMQPConnection.connect(to: configuration)
        let admin = try await setup.openChannel()
        defer { Task { await setup.close() } }

        try await warmUp(admin: admin)
        for round in 0..<options.rounds {
            let sdkFirst = round % 2 == 0
            for workload in throughputWorkloads(messages: options.messages) where included(workload.name) {
                var results: [Bool: Usage] = [:]
                for isSDK in sides(sdkFirst: sdkFirst) {
                    // A fresh queue per run, and a moment for the broker to finish deleting the
                    // last one, so neither side pays for the other's leftovers.
                    let queue = "amqp-bench.\(workload.name)"
                    try await admin.declareQueue(queue)
                    if workload.prefill > 0 { try await prefill(queue, workload.prefill) }
                    results[isSDK] = try await isSDK ? runSDK(workload, queue) : runRawC(workload, queue)
                    try await admin.deleteQueue(queue)
                    try await Task.sleep(for: .milliseconds(300))
                }
                record(workload.name, messages: workload.messages, results, round: round, into: &report)
            }
            for onIOExecutor in [false, true] {
                let name = "roundtrip-latency" + (onIOExecutor ? Self.ioExecutorSuffix : "")
                guard included(name) else { continue }
                let queue = "amqp-bench.latency"
                try await admin.declareQueue(queue)
                try await admin.purgeQueue(queue)
                var sdk: LatencyRun?
                var rawC: LatencyRun?
                for isSDK in sides(sdkFirst: sdkFirst) {
                    if isSDK {
                        sdk = try await latencySDK(queue, onIOExecutor: onIOExecutor)
                    } else {
                        rawC = try await latencyRawC(queue)
                    }
                }
                recordLatency(
                    name, sdk: sdk?.histogram, rawC: rawC?.histogram, percentiles: [50, 99, 99.9], round: round,
                    into: &report)
                // The client's CPU (every thread of the process: publisher, consumer, their I/O).
                report.add(name, "cpu_us_per_roundtrip", sdk: sdk?.cpuMicrosecondsEach, rawC: rawC?.cpuMicrosecondsEach)
            }
        }
        for round in 0..<options.rounds {
            try await runEventWorkloads(round: round, admin: admin, into: &report)
        }
        if included("memory") {
            try await memoryGrowth(into: &report, admin: admin)
        }
        return report
    }

    static let ioExecutorSuffix = "-on-io-executor"

    /// Adds one throughput workload's figures; a side that did not run (`--side`) has none.
    func record(_ name: String, messages: Int, _ results: [Bool: Usage], round: Int, into report: inout Report) {
        let n = Double(messages)
        func rate(_ usage: Usage?) -> Double? { usage.map { n / $0.wall.seconds } }
        func cpu(_ usage: Usage?) -> Double? { usage.map { $0.cpu.seconds * 1e6 / n } }
        report.add(name, "msgs_per_s", sdk: rate(results[true]), rawC: rate(results[false]))
        report.add(name, "cpu_us_per_msg", sdk: cpu(results[true]), rawC: cpu(results[false]))
        log("round \(round + 1) \(name): SDK \(Self.format(rate(results[true]), "/s")), C \(Self.format(rate(results[false]), "/s"))")
    }

    /// Adds one latency workload's percentiles, in microseconds.
    func recordLatency(
        _ name: String, sdk: Histogram<UInt64>?, rawC: Histogram<UInt64>?, percentiles: [Double], round: Int,
        into report: inout Report
    ) {
        func micros(_ histogram: Histogram<UInt64>?, _ percentile: Double) -> Double? {
            histogram.map { Double($0.valueAtPercentile(percentile)) / 1000 }
        }
        for percentile in percentiles {
            let label = percentile == percentile.rounded() ? "\(Int(percentile))" : "\(percentile)"
            report.add(name, "latency_p\(label)_us", sdk: micros(sdk, percentile), rawC: micros(rawC, percentile))
        }
        log("round \(round + 1) \(name): SDK p50 \(Self.format(micros(sdk, 50), "µs")), C p50 \(Self.format(micros(rawC, 50), "µs"))")
    }

    /// A figure for the progress log; `-` for a side that did not run.
    static func format(_ value: Double?, _ unit: String) -> String {
        value.map { "\(Int($0))\(unit)" } ?? "-"
    }

    /// Which sides run, in which order: alternating between rounds, so neither always goes first.
    func sides(sdkFirst: Bool) -> [Bool] {
        switch options.side {
        case .both: sdkFirst ? [true, false] : [false, true]
        case .sdk: [true]
        case .rawC: [false]
        }
    }

    /// Publishes and consumes a little through both sides, untimed, so that whichever runs
    /// first in round 1 does not pay for a cold process and a cold broker.
    private func warmUp(admin: AMQPChannel) async throws {
        let warmUpNames: Set = ["publish-256B", "consume-ack-prefetch100"]
        for workload in throughputWorkloads(messages: max(options.messages / 10, 1000))
        where warmUpNames.contains(workload.name) {
            let queue = "amqp-bench.warm-up"
            for isSDK in [true, false] {
                try await admin.declareQueue(queue)
                if workload.prefill > 0 { try await prefill(queue, workload.prefill) }
                _ = try await isSDK ? runSDK(workload, queue) : runRawC(workload, queue)
                try await admin.deleteQueue(queue)
            }
        }
    }

    /// The SDK's configuration over TLS: the broker's TLS port, its CA, its name.
    var tlsConfiguration: AMQPConnection.Configuration {
        var configuration = self.configuration
        configuration.host = "localhost"
        configuration.port = options.tlsPort
        configuration.tls = .init(caCertificateFile: options.tlsCA)
        return configuration
    }

    var metricsFactory: (any MetricsFactory)? {
        switch options.metrics {
        case .none: nil
        case .noop: NOOPMetricsHandler.instance
        case .inMemory: TestMetrics()
        }
    }

    private func runSDK(_ workload: Throughput, _ queue: String) async throws -> Usage {
        let connection = try await AMQPConnection.connect(
            to: workload.tls ? tlsConfiguration : configuration,
            tracer: options.inMemoryTracer ? InMemoryTracer() : nil,
            metricsFactory: metricsFactory)
        let channel = try await connection.openChannel()
        let usage = try await withTaskExecutorPreference(workload.onIOExecutor ? connection.taskExecutor : nil) {
            try await Usage.measure { try await workload.sdk(channel, queue) }
        }
        await connection.close()
        return usage
    }

    private func runRawC(_ workload: Throughput, _ queue: String) async throws -> Usage {
        let connection = try openRawC(tls: workload.tls)
        defer { raw_bench_close(connection.pointer) }
        let run = workload.rawC
        var status: Int32 = 0
        let usage = await Usage.measure {
            status = await onOwnThread { run(connection, queue) }
        }
        guard status == 0 else { throw BenchError("raw C \(workload.name) failed") }
        return usage
    }

    func openRawC(tls: Bool = false) throws -> RawConnection {
        let target = tls ? tlsConfiguration : configuration
        guard
            let connection = raw_bench_open_tls(
                target.host, Int32(target.port), target.virtualHost, target.username, target.password,
                tls ? options.tlsCA : nil)
        else { throw BenchError("raw C could not connect") }
        return RawConnection(pointer: connection)
    }

    /// Fills a queue with raw C (fast and not timed), then waits until the broker holds it all.
    private func prefill(_ queue: String, _ count: Int) async throws {
        let connection = try openRawC()
        defer { raw_bench_close(connection.pointer) }
        let status = await onOwnThread { raw_bench_publish(connection.pointer, queue, 256, UInt64(count)) }
        guard status == 0 else { throw BenchError("prefill failed") }
    }

    /// Round trips' latencies, and the process's CPU time over all of them.
    struct LatencyRun {
        var histogram: Histogram<UInt64>
        var cpu: Duration
        var count: Int

        var cpuMicrosecondsEach: Double { cpu.seconds * 1e6 / Double(count) }
    }

    /// `onIOExecutor`: the measuring task runs on the consuming connection's I/O thread.
    private func latencySDK(_ queue: String, onIOExecutor: Bool) async throws -> LatencyRun {
        let publisher = try await AMQPConnection.connect(to: configuration)
        let consumerConnection = try await AMQPConnection.connect(to: configuration)
        defer { Task { await publisher.close(); await consumerConnection.close() } }
        let publishChannel = try await publisher.openChannel()
        let consumer = try await consumerConnection.openChannel().consume(queue: queue, noAck: true)
        let count = options.latencyMessages
        return try await withTaskExecutorPreference(onIOExecutor ? consumerConnection.taskExecutor : nil) {
            var iterator = consumer.makeAsyncIterator()
            var histogram = Histogram<UInt64>(
                highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
            let body = [UInt8](repeating: 0x61, count: 256)
            let clock = ContinuousClock()
            let cpuStart = Usage.processCPUTime()
            for _ in 0..<count {
                let start = clock.now
                try await publishChannel.publish(body, routingKey: queue)
                guard try await iterator.next() != nil else { throw BenchError("consumer ended") }
                let elapsed = clock.now - start
                _ = histogram.record(UInt64(elapsed.seconds * 1e9))
            }
            return LatencyRun(histogram: histogram, cpu: Usage.processCPUTime() - cpuStart, count: count)
        }
    }

    private func latencyRawC(_ queue: String) async throws -> LatencyRun {
        let publisher = try openRawC()
        let consumer = try openRawC()
        defer {
            raw_bench_close(publisher.pointer)
            raw_bench_close(consumer.pointer)
        }
        let count = options.latencyMessages
        var latencies: [UInt64]?
        let usage = await Usage.measure {
            latencies = await onOwnThread { () -> [UInt64]? in
                var latencies = [UInt64](repeating: 0, count: count)
                let status = raw_bench_latency(publisher.pointer, consumer.pointer, queue, 256, UInt64(count), &latencies)
                return status == 0 ? latencies : nil
            }
        }
        guard let latencies else { throw BenchError("raw C latency failed") }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        for latency in latencies { _ = histogram.record(latency) }
        return LatencyRun(histogram: histogram, cpu: usage.cpu, count: count)
    }

    /// Publishes and consumes `memoryMessages` through the SDK at once and compares resident
    /// memory after warm-up with memory at the end.
    private func memoryGrowth(into report: inout Report, admin: AMQPChannel) async throws {
        let queue = "amqp-bench.memory"
        try await admin.declareQueue(queue)
        try await admin.purgeQueue(queue)
        let total = options.memoryMessages
        let warmUp = max(total / 10, 1)
        let connection = try await AMQPConnection.connect(to: configuration)
        defer { Task { await connection.close() } }
        let consumerChannel = try await connection.openChannel()
        try await consumerChannel.setPrefetch(count: 1000)
        let consumer = try await consumerChannel.consume(queue: queue)
        let publisher = try await connection.openChannel()

        let consuming = Task { () -> (Double, Double) in
            var received = 0
            var afterWarmUp = 0.0
            for try await delivery in consumer {
                received += 1
                if received % 100 == 0 || received == total { try await delivery.ack(multiple: true) }
                if received == warmUp { afterWarmUp = Memory.residentMiB() }
                if received == total { break }
            }
            return (afterWarmUp, Memory.residentMiB())
        }
        let body = [UInt8](repeating: 0x61, count: 256)
        for index in 0..<total {
            try await publisher.publish(body, routingKey: queue)
            // Keep the queue short so the broker, not the client, is what buffers.
            if index % 10_000 == 9_999 { try await publisher.declareQueue(queue, passive: true) }
        }
        let (afterWarmUp, atEnd) = try await consuming.value
        report.add("memory-\(total)-msgs", "rss_mib_after_warmup", sdk: afterWarmUp, rawC: nil)
        report.add("memory-\(total)-msgs", "rss_mib_at_end", sdk: atEnd, rawC: nil)
        report.add("memory-\(total)-msgs", "growth_ratio", sdk: atEnd / afterWarmUp, rawC: nil)
        report.add("memory-\(total)-msgs", "peak_rss_mib", sdk: Memory.peakResidentMiB(), rawC: nil)
        log("memory: \(afterWarmUp) MiB after warm-up, \(atEnd) MiB after \(total) messages")
    }

    func log(_ message: String) {
        FileHandle.standardError.write(Data("amqp-bench: \(message)\n".utf8))
    }
}

/// A raw C connection. `@unchecked Sendable` is sound because the harness hands it to exactly
/// one thread at a time: it awaits each C run to the end before it touches the connection again.
struct RawConnection: @unchecked Sendable {
    let pointer: OpaquePointer
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
