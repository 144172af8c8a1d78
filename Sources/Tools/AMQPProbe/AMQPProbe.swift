#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import AMQPClient
import Foundation

/// A small client for the hostile-broker tests: it connects (without recovery), consumes from
/// a queue, and reports how the connection ended, with its own peak memory. The tests run it as
/// a separate process, so that a crash shows as a signal instead of taking the test runner down.
///
/// It prints `probe: consuming` once `consume` returned, `probe: delivery of <n> bytes in a buffer
/// of <capacity>` for each delivery, and at the end `probe: error code=… reply=… <message>` (or
/// `probe: closed`) and `probe: maxrss_kib=<peak>`. When the connection outlived the consumer,
/// `probe: ended <seconds> s after consuming` comes before those, timed by the probe itself.
@main
struct AMQPProbe {
    /// The broker's AMQP URI (`--url`).
    var url: String
    /// The queue to consume from (`--queue`, default `probe`).
    var queue = "probe"
    /// Consume but never take a delivery: wait this many seconds, report the peak memory, and
    /// exit (`--hold-seconds`).
    var holdSeconds: Double?
    /// Report the peak memory and exit after this many deliveries (`--exit-after`).
    var exitAfter: Int?
    /// The connection's writeTimeout, in seconds (`--write-timeout`; default: the client's).
    var writeTimeout: Double?

    static let usage = "usage: amqp-probe --url URI [--queue NAME] [--hold-seconds S] [--exit-after N] [--write-timeout S]"

    static func main() async {
        do {
            try await parse(Array(CommandLine.arguments.dropFirst())).run()
        } catch let error as UsageError {
            FileHandle.standardError.write(Data("\(error.message)\n\(usage)\n".utf8))
            exit(64)
        } catch {
            FileHandle.standardError.write(Data("amqp-probe: \(error)\n".utf8))
            exit(1)
        }
    }

    struct UsageError: Error {
        var message: String
    }

    /// The options, as `--name value` pairs. (The probe has no dependency beyond the client: a
    /// package that depends on this one resolves nothing for it.)
    static func parse(_ arguments: [String]) throws(UsageError) -> AMQPProbe {
        var url: String?
        var probe = AMQPProbe(url: "")
        var rest = arguments[...]
        while let name = rest.popFirst() {
            guard let value = rest.popFirst() else { throw UsageError(message: "\(name) needs a value") }
            func number() throws(UsageError) -> Double {
                guard let number = Double(value) else { throw UsageError(message: "\(name) takes a number, not \(value)") }
                return number
            }
            switch name {
            case "--url": url = value
            case "--queue": probe.queue = value
            case "--hold-seconds": probe.holdSeconds = try number()
            case "--exit-after": probe.exitAfter = Int(try number())
            case "--write-timeout": probe.writeTimeout = try number()
            default: throw UsageError(message: "unknown option \(name)")
            }
        }
        guard let url else { throw UsageError(message: "--url is required") }
        probe.url = url
        return probe
    }

    func run() async throws {
        lineBufferStandardOutput()
        var configuration = try AMQPConnection.Configuration(url: url)
        configuration.recovery = .disabled
        configuration.connectTimeout = .seconds(5)
        if let writeTimeout { configuration.writeTimeout = .seconds(writeTimeout) }
        do {
            let connection = try await AMQPConnection.connect(to: configuration)
            let channel = try await connection.openChannel()
            let consumer = try await channel.consume(queue: queue, noAck: true)
            let consuming = ContinuousClock.now
            print("probe: consuming")
            if let holdSeconds {
                // Deliveries pile up in the consumer's buffer, up to its limit.
                try await Task.sleep(for: .seconds(holdSeconds))
                print("probe: held \(holdSeconds) s")
                print("probe: maxrss_kib=\(Self.peakResidentKiB())")
                return
            }
            do {
                var received = 0
                for try await delivery in consumer {
                    print("probe: delivery of \(delivery.body.count) bytes in a buffer of \(delivery.body.capacity)")
                    received += 1
                    if let exitAfter, received >= exitAfter {
                        print("probe: maxrss_kib=\(Self.peakResidentKiB())")
                        return
                    }
                }
                // The consumer ended as if the application had cancelled it.
                print("probe: consumer ended")
                await connection.close()
            } catch let error as AMQPError where error.code == .consumerCancelled {
                // The broker cancelled the consumer; the connection goes on until it ends.
                print("probe: consumer cancelled by the broker")
            }
            let ended = await connection.closed()
            print("probe: ended \(Self.seconds(consuming.duration(to: .now))) s after consuming")
            report(ended)
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

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.3f", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
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
        #if canImport(Glibc)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        return usage.ru_maxrss
    }
}

/// Each line as it is printed: the tests read them from a pipe.
func lineBufferStandardOutput() {
    setvbuf(stdout, nil, _IOLBF, 0)
}
