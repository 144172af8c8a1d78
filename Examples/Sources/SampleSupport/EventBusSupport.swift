public import AMQPEvents
import AMQPClient
public import ArgumentParser
public import Logging
public import ServiceLifecycle

/// What every event sample's command takes: the broker, `--trace` and `--metrics`.
public struct CommonOptions: ParsableArguments, Sendable {
    @OptionGroup public var broker: BrokerOptions
    @OptionGroup public var observability: ObservabilityOptions

    public init() {}
}

/// What every event sample starts with: line-buffered output, tracing and metrics as asked, and a
/// connection named `name` that republishes what was unconfirmed at a loss.
func sampleSetUp(
    _ options: CommonOptions, name: String
) throws -> (AMQPConnection.Configuration, Logger, ObservabilityOptions.Bootstrapped) {
    lineBufferStandardOutput()
    let observability = options.observability.bootstrap()
    var configuration = try options.broker.configuration(connectionName: name)
    configuration.recovery.republishUnconfirmed = true
    var logger = Logger(label: name)
    logger.logLevel = .info
    return (configuration, logger, observability)
}

/// Runs `body` with an event bus on a connection named `name`, with tracing and metrics as asked.
public func withEventBus<Result: Sendable>(
    _ options: CommonOptions, name: String, _ body: (EventBus) async throws -> Result
) async throws -> Result {
    let (configuration, logger, observability) = try sampleSetUp(options, name: name)
    defer { observability.finish() }
    let connection = try await AMQPConnection.connect(to: configuration, logger: logger)
    let bus = EventBus(connection: connection, configuration: .init(appID: name), logger: logger)
    do {
        let result = try await body(bus)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

/// Ends the service group once `count` orders were handled (never without a count).
public struct StopAfter: Service {
    let tally: Tally
    let service: String
    let count: Int?

    public init(tally: Tally, service: String, count: Int?) {
        self.tally = tally
        self.service = service
        self.count = count
    }

    public func run() async throws {
        guard let count else {
            try await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown {
            _ = await tally.wait(upTo: .seconds(86_400)) { $0[service, default: 0] >= count }
        }
    }
}

/// Runs `services` until Ctrl-C or SIGTERM, or until the tally counts `count` for `counted`
/// (when given); then shuts them down gracefully: in-flight events are finished and settled.
public func runServices(
    _ services: [any Service], logger: Logger, tally: Tally, counted: String, count: Int?
) async throws {
    var configurations = services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
    configurations.append(
        .init(
            service: StopAfter(tally: tally, service: counted, count: count),
            successTerminationBehavior: .gracefullyShutdownGroup))
    let group = ServiceGroup(
        configuration: ServiceGroupConfiguration(
            services: configurations, gracefulShutdownSignals: [.sigint, .sigterm], logger: logger))
    try await group.run()
}

/// A sample service's whole life, as one ``EventService``: its connection and bus named `name`,
/// the services `make` returns, until Ctrl-C or SIGTERM, or until the tally counts `count` for
/// `counted`. The service stops them in order: intake, handlers in flight, then the connection.
public func runEventService(
    _ options: CommonOptions, name: String, waitingFor what: String, counted: String, count: Int?,
    _ make: @escaping @Sendable (EventBus, Tally) throws -> [any Service]
) async throws {
    let (connection, logger, observability) = try sampleSetUp(options, name: name)
    defer { observability.finish() }
    let tally = Tally()
    let service = EventService(configuration: .init(connection: connection, bus: .init(appID: name)), logger: logger) {
        bus, parts in
        for service in try make(bus, tally) { parts.run(service) }
        print(" [*] \(name) waiting for \(what). To exit press CTRL+C")
    }
    try await runServices([service], logger: logger, tally: tally, counted: counted, count: count)
}
