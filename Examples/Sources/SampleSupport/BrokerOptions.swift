#if canImport(Glibc)
@preconcurrency import Glibc
#endif
public import AMQPClient
public import ArgumentParser
public import AMQPEvents
import Foundation

/// The options every sample takes to reach the broker.
public struct BrokerOptions: ParsableArguments, Sendable {
    // Resolved at run time rather than shown as a default in --help: $AMQP_URL may hold a password.
    @Option(help: "The broker's AMQP URI (default: $AMQP_URL, else amqp://guest:guest@localhost:5672/). Visible to `ps`: prefer --url-file or $AMQP_URL when it holds a password.")
    public var url: String?

    @Option(help: "A file whose first line is the broker's AMQP URI (say, a mounted secret).")
    public var urlFile: String?

    public init() {}

    /// The broker's URI: `--url`, else the first line of `--url-file`, else `$AMQP_URL`, else
    /// a local broker with the default user.
    public func resolvedURL() throws -> String {
        if let url { return url }
        if let urlFile {
            let contents = try String(contentsOfFile: urlFile, encoding: .utf8)
            guard let line = contents.split(whereSeparator: \.isNewline).first, !line.isEmpty else {
                throw ValidationError("\(urlFile) holds no URI")
            }
            return line.trimmingCharacters(in: .whitespaces)
        }
        return ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"
    }

    /// The connection configuration for the broker, named `connectionName` in the management UI.
    public func configuration(connectionName: String) throws -> AMQPConnection.Configuration {
        let url = try resolvedURL()
        var configuration = try AMQPConnection.Configuration(url: url)
        configuration.connectionName = connectionName
        // Recovery is on by default; retry at least every 2 s so a restarted broker is found fast.
        configuration.recovery.maximumDelay = .seconds(2)
        return configuration
    }
}

/// Flushes standard output at every newline, also into a pipe or file: scripts and tests
/// read the samples' lines as they happen.
public func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}

/// `--envelope amqp|cloudevents-binary|cloudevents-structured`.
extension EventEnvelope: @retroactive ExpressibleByArgument {}
