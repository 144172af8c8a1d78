#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import AMQPClient
import ArgumentParser
import Foundation

/// A small client for the hostile-broker tests: it connects (without recovery), consumes from
/// a queue, and reports how the connection ended, with its own peak memory. The tests run it as
/// a separate process, so that a crash shows as a signal instead of taking the test runner down.
@main
struct AMQPProbe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp-probe", abstract: "Connect, consume, and report how the connection ended.")

    @Option(help: "The broker's AMQP URI.")
    var url: String

    @Option(help: "The queue to consume from.")
    var queue = "probe"

    func run() async throws {
        lineBufferStandardOutput()
        var configuration = try AMQPConnection.Configuration(url: url)
        configuration.recovery = .disabled
        configuration.connectTimeout = .seconds(5)
        do {
            let connection = try await AMQPConnection.connect(to: configuration)
            let channel = try await connection.openChannel()
            for try await delivery in try await channel.consume(queue: queue, noAck: true) {
                print("probe: delivery of \(delivery.body.count) bytes")
            }
            report(await connection.closed())
        } catch let error as AMQPError {
            report(error)
        }
    }

    func report(_ error: AMQPError?) {
        if let error {
            // The message can quote what the (hostile) broker sent: escaped, as in the client's logs.
            let message = LogText.escaped(error.message, limit: 1024)
            print("probe: error code=\(error.code) reply=\(error.replyCode.map(String.init) ?? "-") \(message)")
        } else {
            print("probe: closed")
        }
        print("probe: maxrss_kib=\(Self.peakResidentKiB())")
    }

    /// The process's peak resident memory. On Linux from /proc (getrusage's figure keeps the
    /// peak of the process that forked this one); elsewhere from getrusage.
    static func peakResidentKiB() -> Int {
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        {
            return kib
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss
    }
}

/// Each line as it is printed: the tests read them from a pipe.
func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}
