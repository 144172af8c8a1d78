public import ArgumentParser
import CoreMetrics
import Foundation
import Prometheus
import Tracing

/// `--trace` and `--metrics` for the samples.
public struct ObservabilityOptions: ParsableArguments, Sendable {
    @Flag(help: "Trace publishing and processing (W3C traceparent in the message headers); spans go to standard error.")
    public var trace = false

    @Flag(help: "Collect the client's metrics and print them (Prometheus text format) at exit.")
    public var metrics = false

    public init() {}

    /// Bootstraps the tracer and the metrics backend asked for. Call once, before connecting;
    /// call ``Bootstrapped/finish()`` at exit.
    public func bootstrap() -> Bootstrapped {
        if trace { InstrumentationSystem.bootstrap(W3CTracer.printing()) }
        var registry: PrometheusCollectorRegistry?
        if metrics {
            let collector = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: collector)
            // Prometheus names have no dots: OpenTelemetry's exporters write them as underscores.
            factory.nameAndLabelSanitizer = { name, labels in
                (
                    name.replacingOccurrences(of: ".", with: "_"),
                    labels.map { ($0.0.replacingOccurrences(of: ".", with: "_"), $0.1) }
                )
            }
            MetricsSystem.bootstrap(factory)
            registry = collector
        }
        return Bootstrapped(registry: registry)
    }

    public struct Bootstrapped: Sendable {
        let registry: PrometheusCollectorRegistry?

        /// Prints the metrics, if they were asked for.
        public func finish() {
            guard let registry else { return }
            print("# metrics at exit")
            print(registry.emitToString(), terminator: "")
        }
    }
}
