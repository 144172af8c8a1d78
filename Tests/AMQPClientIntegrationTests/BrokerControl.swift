import Foundation

/// Runs `rabbitmqctl` against the test broker through scripts/broker.sh and returns its output.
@discardableResult
func rabbitmqctl(_ arguments: String...) async throws -> String {
    let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/broker.sh")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = [script.path, "ctl"] + arguments
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let handle = output.fileHandleForReading
    let (status, text) = try await withTimeout(60, "rabbitmqctl \(arguments.joined(separator: " "))") {
        await offThePool {
            let data = handle.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: data, as: UTF8.self))
        }
    }
    guard status == 0 else { throw CtlFailed(arguments: arguments, status: status) }
    return text
}

/// Closes, from the broker's side, every live connection whose client-provided name is `name`
/// (`rabbitmqctl close_connection`). Returns how many it closed: at least one, as it polls for up
/// to 10 s while the connection is still being (re)opened, say recovering from an earlier cut.
@discardableResult
func closeConnectionsFromBroker(named name: String) async throws -> Int {
    try await withTimeout(10, "a live connection named \(name)") {
        while true {
            let closed = try await closeLiveConnections(named: name)
            if closed > 0 { return closed }
            try await Task.sleep(for: .milliseconds(100))  // a polling interval, not a synchronisation
        }
    }
}

private func closeLiveConnections(named name: String) async throws -> Int {
    let listing = try await rabbitmqctl("list_connections", "--no-table-headers", "pid", "state", "client_properties")
    // Only live connections: one the broker is still tearing down after a cut may be listed too.
    let pids = listing.split(separator: "\n").filter { $0.contains("\"\(name)\"") }.compactMap { line -> String? in
        let columns = line.split(separator: "\t")
        guard columns.count > 1, columns[1] == "running" || columns[1] == "blocked" || columns[1] == "blocking" else {
            return nil
        }
        return String(columns[0])
    }
    var closed = 0
    for pid in pids {
        do {
            try await rabbitmqctl("close_connection", pid, "closed by the test suite")
            closed += 1
        } catch let failure as CtlFailed where failure.status == 69 {
            continue  // it ended meanwhile (EX_UNAVAILABLE: no such connection)
        }
    }
    return closed
}

struct CtlFailed: Error, CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    var description: String { "rabbitmqctl \(arguments.joined(separator: " ")) exited with \(status)" }
}
