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

/// Closes, from the broker's side, every connection whose client-provided name is `name`
/// (`rabbitmqctl close_connection`). Returns how many it closed.
@discardableResult
func closeConnectionsFromBroker(named name: String) async throws -> Int {
    let listing = try await rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    let pids = listing.split(separator: "\n").filter { $0.contains("\"\(name)\"") }.compactMap {
        $0.split(separator: "\t").first.map(String.init)
    }
    for pid in pids {
        try await rabbitmqctl("close_connection", pid, "closed by the test suite")
    }
    return pids.count
}

struct CtlFailed: Error, CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    var description: String { "rabbitmqctl \(arguments.joined(separator: " ")) exited with \(status)" }
}
