import AMQPClient
import Foundation
import Testing

@Suite("The connection as a task executor")
struct TaskExecutorTests {
    /// The name of the thread running the caller, as the kernel knows it.
    static func threadName() -> String {
        #if os(Linux)
        let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        return name.trimmingCharacters(in: .newlines)
        #else
        return Thread.current.name ?? ""
        #endif
    }

    @Test("a consumer whose task prefers the executor runs on the I/O thread, gets every delivery in order, and acks")
    func consumerOnIOThread() async throws {
        try await withScratchQueue { scratch in
            let count = 300
            for index in 0..<count { try await scratch.channel.publish("m\(index)", routingKey: scratch.name) }
            try await scratch.channel.waitForQueue(scratch.name) { $0.messageCount == count }

            try await withTestConnection { connection in
                let channel = try await connection.openChannel()
                try await channel.setPrefetch(count: 10)
                let (bodies, threads) = try await withTaskExecutorPreference(connection.taskExecutor) {
                    var bodies: [String] = []
                    var threads: Set<String> = []
                    for try await delivery in try await channel.consume(queue: scratch.name) {
                        threads.insert(Self.threadName())
                        bodies.append(delivery.bodyString)
                        try await delivery.ack()
                        if bodies.count == count { break }
                    }
                    return (bodies, threads)
                }
                #expect(bodies == (0..<count).map { "m\($0)" })
                #if os(Linux)
                #expect(threads == ["amqp-io"])
                #endif
                let info = try await scratch.channel.waitForQueue(scratch.name, "every message acked") {
                    $0.messageCount == 0 && $0.consumerCount == 0
                }
                #expect(info.messageCount == 0)
            }
        }
    }

    @Test("publishing and confirms from the executor's own connection make progress")
    func publishFromIOThread() async throws {
        try await withScratchQueue { scratch in
            try await withTestConnection { connection in
                let channel = try await connection.openChannel()
                try await channel.enablePublisherConfirms()
                try await withTimeout(10, "50 confirmed publishes from the I/O thread") {
                    try await withTaskExecutorPreference(connection.taskExecutor) {
                        for index in 0..<50 {
                            try await channel.publish("m\(index)", routingKey: scratch.name).confirmed()
                        }
                    }
                }
                try await scratch.channel.waitForQueue(scratch.name) { $0.messageCount == 50 }
            }
        }
    }

    @Test("tasks that prefer the executor keep running while the connection recovers, and after it closes")
    func runsDuringRecoveryAndAfterClose() async throws {
        let (proxy, connection) = try await ConnectionFailureTests.connectThroughProxy(recovery: .fast())
        defer { proxy.stop() }
        let watcher = EventWatcher(connection)
        proxy.mode = .refuse
        proxy.cutAll()
        try await watcher.next("a failed attempt") { if case .recoveryFailed = $0 { true } else { false } }
        #expect(connection.isRecovering)

        let executor = connection.taskExecutor
        let whileRecovering = try await withTimeout(5, "a task on the executor while recovering") {
            try await withTaskExecutorPreference(executor) {
                for _ in 0..<5 { try await Task.sleep(for: .milliseconds(10)) }
                return Self.threadName()
            }
        }
        #expect(connection.isRecovering)
        #if os(Linux)
        #expect(whileRecovering == "amqp-io")
        #endif

        try await withTimeout(5, "close()") { await connection.close() }
        let afterClose = try await withTimeout(5, "a task on the executor after close") {
            try await withTaskExecutorPreference(executor) {
                try await Task.sleep(for: .milliseconds(10))
                return Self.threadName()
            }
        }
        #expect(afterClose != "amqp-io")
    }
}
