import AMQPClient
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing

/// The three-node cluster of `scripts/cluster.sh` (nodes on 127.0.0.1:5681, 5682, 5683).
enum TestCluster {
    static let basePort = ProcessInfo.processInfo.environment["CLUSTER_BASE_PORT"].flatMap(Int.init) ?? 5680
    static let nodes = [1, 2, 3]

    static func port(_ node: Int) -> Int { basePort + node }

    static func node(of connection: AMQPConnection) -> Int? {
        connection.currentEndpoint.map { $0.port - basePort }
    }

    /// Every node, shuffled (the default) or in order starting at `first`.
    static func configuration(first: Int? = nil, name: String = "ClusterTests") -> AMQPConnection.Configuration {
        var configuration = AMQPConnection.Configuration(host: "127.0.0.1", port: port(first ?? 1))
        let others = nodes.filter { $0 != (first ?? 1) }
        configuration.alternateEndpoints = others.map { .init(host: "127.0.0.1", port: port($0)) }
        configuration.endpointOrder = first == nil ? .shuffled : .inOrder
        configuration.connectionName = name
        configuration.connectTimeout = .seconds(2)
        configuration.heartbeat = .seconds(5)
        configuration.recovery = .init(
            initialDelay: .milliseconds(100), maximumDelay: .milliseconds(500), republishUnconfirmed: true)
        return configuration
    }

    /// A connection to the cluster (see ``configuration(first:name:)``).
    static func connect(first: Int? = nil, name: String = "ClusterTests") async throws -> AMQPConnection {
        try await AMQPConnection.connect(to: configuration(first: first, name: name))
    }

    /// `scripts/cluster.sh` with `arguments` (kill 2, restart 2, …). Spawned and waited for with
    /// `posix_spawn` and `waitpid` on a thread of its own: Foundation's `Process` missed the exit of
    /// a script that leaves a daemon (the restarted node) behind.
    static func script(_ arguments: String...) async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let argv = ["/bin/bash", root.appendingPathComponent("scripts/cluster.sh").path] + arguments
        let status = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
            Thread.detachNewThread {
                var pid: pid_t = 0
                var cArguments = argv.map { strdup($0) } + [nil]
                defer { for argument in cArguments { free(argument) } }
                let spawned = posix_spawn(&pid, "/bin/bash", nil, nil, &cArguments, environ)
                guard spawned == 0 else {
                    continuation.resume(throwing: ClusterScriptFailed(arguments: arguments, status: spawned))
                    return
                }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
                continuation.resume(returning: status)
            }
        }
        guard status == 0 else { throw ClusterScriptFailed(arguments: arguments, status: status) }
    }

    struct ClusterScriptFailed: Error, CustomStringConvertible {
        let arguments: [String]
        let status: Int32
        var description: String { "scripts/cluster.sh \(arguments.joined(separator: " ")) exited with \(status)" }
    }

    /// Kills `node` and returns when it is down; the caller restarts it.
    static func kill(_ node: Int) async throws {
        progress("killing node \(node)")
        try await script("kill", "\(node)")
    }

    static func restart(_ node: Int) async throws {
        progress("restarting node \(node)")
        try await script("restart", "\(node)")
        progress("node \(node) is back")
    }
}

/// A line on standard error at once (standard output is buffered when it is not a terminal):
/// what a long cluster test is doing.
func progress(_ message: String) {
    FileHandle.standardError.write(Data("cluster test: \(message)\n".utf8))
}

/// A connection's recovery: how long from `start` until it recovered.
func timeToRecover(_ watcher: EventWatcher, since start: ContinuousClock.Instant) async throws -> Duration {
    try await watcher.recovered(within: 30)
    progress("recovered after \(start.duration(to: .now))")
    return start.duration(to: .now)
}

/// Needs `scripts/cluster.sh start`; `scripts/test.sh --cluster` runs it with AMQP_CLUSTER_TESTS=1.
@Suite("Cluster: failover across three nodes", .serialized, .enabled(if: ProcessInfo.processInfo.environment["AMQP_CLUSTER_TESTS"] == "1", "needs the three-node cluster: scripts/test.sh --cluster"))
struct ClusterTests {
    @Test("30 connections with shuffled endpoints spread over the three nodes")
    func shuffledEndpoints() async throws {
        try await TestCluster.script("start")  // every node up, whatever an earlier test left
        var connections: [AMQPConnection] = []
        for _ in 0..<30 { connections.append(try await TestCluster.connect()) }
        var perNode: [Int: Int] = [:]
        for connection in connections { perNode[TestCluster.node(of: connection) ?? 0, default: 0] += 1 }
        for connection in connections { await connection.close() }
        print("shuffled endpoints: 30 connections per node \(perNode.sorted { $0.key < $1.key })")
        #expect(perNode.values.allSatisfy { $0 < 30 })
        #expect(perNode.keys.sorted() == [1, 2, 3])
    }

    @Test("a quorum queue: kill the publisher's node, then the consumer's, while 20,000 persistent messages flow: 0 confirmed lost")
    func quorumFailover() async throws {
        try await TestCluster.script("start")  // every node up, whatever an earlier test left
        let total = 20_000
        let queue = TestBroker.uniqueName("cluster.quorum")
        let publisher = try await TestCluster.connect(first: 1, name: "cluster-publisher")
        let consumerConnection = try await TestCluster.connect(first: 2, name: "cluster-consumer")
        defer { Task { await publisher.close(); await consumerConnection.close() } }
        let publisherEvents = EventWatcher(publisher)
        let consumerEvents = EventWatcher(consumerConnection)

        progress("publisher on node \(TestCluster.node(of: publisher) ?? 0), consumer on node \(TestCluster.node(of: consumerConnection) ?? 0)")
        let channel = try await publisher.openChannel()
        try await channel.declareQueue(queue, type: .quorum())
        try await channel.enablePublisherConfirms()
        let consumerChannel = try await consumerConnection.openChannel()
        try await consumerChannel.setPrefetch(count: 500)
        let consumer = try await consumerChannel.consume(queue: queue)
        progress("declared \(queue), consuming")

        let received = Mutex<[Int: Int]>([:])
        let consuming = Task {
            for try await delivery in consumer {
                let index = Int(delivery.bodyString) ?? -1
                let count = received.withLock { received in
                    received[index, default: 0] += 1
                    return received.count
                }
                try? await delivery.ack()
                if count >= total { return }
            }
        }

        // Publish, with confirms; kill the publisher's node a quarter of the way. What the broker
        // nacks (a quorum queue without a leader refuses; RabbitMQ 3.10 keeps refusing on that
        // channel) is published again on a new channel, as a producer would.
        let killedFirst = try #require(TestCluster.node(of: publisher))
        var publishing = channel
        var confirmed = 0
        var nacked = 0
        var publisherRecovery: Duration?
        var pending = Array(0..<total)
        var round = 0
        while !pending.isEmpty && round < 10 {
            round += 1
            var failedIndices: [Int] = []
            for batchStart in stride(from: 0, to: pending.count, by: 1000) {
                let batch = pending[batchStart..<min(batchStart + 1000, pending.count)]
                var confirmations: [(Int, AMQPPublishConfirmation)] = []
                for index in batch {
                    if index == total / 4 && publisherRecovery == nil {
                        let start = ContinuousClock.now
                        try await TestCluster.kill(killedFirst)
                        publisherRecovery = try await timeToRecover(publisherEvents, since: start)
                    }
                    let properties = AMQPProperties(deliveryMode: .persistent)
                    confirmations.append((index, try await publishing.publish("\(index)", routingKey: queue, properties: properties)))
                }
                for (index, confirmation) in confirmations {
                    do {
                        try await confirmation.confirmed()
                        confirmed += 1
                    } catch {
                        if nacked == 0 { progress("first failed confirm: \(error)") }
                        nacked += 1
                        failedIndices.append(index)
                    }
                }
                progress("round \(round): \(confirmed) confirmed, \(nacked) refused so far")
            }
            pending = failedIndices
            if !pending.isEmpty {
                publishing = try await publisher.openChannel()
                try await publishing.enablePublisherConfirms()
            }
        }
        let failed = pending.count
        try await TestCluster.restart(killedFirst)

        // Then the node the consumer is on (it may have moved).
        progress("all published: \(confirmed) confirmed, \(failed) failed; received \(received.withLock { $0.count })")
        let consumerNode = try #require(TestCluster.node(of: consumerConnection))
        let start = ContinuousClock.now
        try await TestCluster.kill(consumerNode)
        let consumerRecovery = try await timeToRecover(consumerEvents, since: start)
        try await withTimeout(120, "every message to arrive") { try await consuming.value }
        try await TestCluster.restart(consumerNode)

        let counts = received.withLock { $0 }
        let lost = (0..<total).filter { counts[$0] == nil }.count
        let duplicates = counts.values.reduce(0) { $0 + $1 - 1 }
        print(
            "quorum failover: published \(total), confirmed \(confirmed), refused and published again \(nacked), never confirmed \(failed), received \(counts.count), lost \(lost), duplicates \(duplicates); publisher on node \(killedFirst) recovered in \(publisherRecovery.map { "\($0)" } ?? "-") onto node \(TestCluster.node(of: publisher) ?? 0), consumer on node \(consumerNode) recovered in \(consumerRecovery) onto node \(TestCluster.node(of: consumerConnection) ?? 0)"
        )
        #expect(confirmed == total)
        #expect(failed == 0)
        #expect(lost == 0)
        #expect(publisherRecovery.map { $0 < .seconds(5) } == true)
        #expect(consumerRecovery < .seconds(5))

        // The cluster healed: the client keeps working on every node.
        try await TestCluster.script("status")
        try await publishing.publish("after", routingKey: queue).confirmed()
        try await publishing.deleteQueue(queue)
    }

    @Test("a stream: read from first, from an offset, from next; the consumer's node killed mid-way resumes after its last offset")
    func streamFailover() async throws {
        try await TestCluster.script("start")  // every node up, whatever an earlier test left
        let total = 10_000
        let stream = TestBroker.uniqueName("cluster.stream")
        let connection = try await TestCluster.connect(first: 3, name: "cluster-stream")
        defer { Task { await connection.close() } }
        let events = EventWatcher(connection)
        let channel = try await connection.openChannel()
        try await channel.declareQueue(stream, type: .stream(.init(maximumLengthBytes: 100_000_000, initialClusterSize: 3)))
        try await channel.enablePublisherConfirms()
        var confirmations: [AMQPPublishConfirmation] = []
        for index in 0..<total { confirmations.append(try await channel.publish("\(index)", routingKey: stream)) }
        for confirmation in confirmations { try await confirmation.confirmed() }

        // From an offset.
        let reader = try await connection.openChannel()
        try await reader.setPrefetch(count: 100)
        var fromOffset = try await reader.consume(stream: stream, from: .offset(5_000)).makeAsyncIterator()
        let first = try #require(try await fromOffset.next(within: 10))
        #expect(first.streamOffset == 5_000)
        #expect(first.bodyString == "5000")
        await reader.close()

        // From next: only what is published from now on.
        let nextReader = try await connection.openChannel()
        try await nextReader.setPrefetch(count: 100)
        var fromNext = try await nextReader.consume(stream: stream, from: .next).makeAsyncIterator()
        try await channel.publish("later", routingKey: stream).confirmed()
        let later = try #require(try await fromNext.next(within: 10))
        #expect(later.bodyString == "later")
        await nextReader.close()

        // From first, with the consumer's node killed at 4,000.
        let consumerChannel = try await connection.openChannel()
        try await consumerChannel.setPrefetch(count: 200)
        let consumer = try await consumerChannel.consume(stream: stream, from: .first)
        let node = try #require(TestCluster.node(of: connection))
        // Returns what it read (offset → times) and how long the recovery took.
        let (seen, recovery) = try await withTimeout(120, "the whole stream") { () -> ([Int64: Int], Duration?) in
            var seen: [Int64: Int] = [:]
            var recovery: Duration?
            var iterator = consumer.makeAsyncIterator()
            while let delivery = try await iterator.next() {
                guard let offset = delivery.streamOffset else { continue }
                try? await delivery.ack()
                if delivery.bodyString == "later" { break }
                seen[offset, default: 0] += 1
                if seen.count == 4_000 && recovery == nil {
                    let start = ContinuousClock.now
                    try await TestCluster.kill(node)
                    recovery = try await timeToRecover(events, since: start)
                }
            }
            return (seen, recovery)
        }
        try await TestCluster.restart(node)
        let offsets = seen.keys.sorted()
        let gaps = zip(offsets, offsets.dropFirst()).filter { $1 != $0 + 1 }.count
        let duplicates = seen.values.reduce(0) { $0 + $1 - 1 }
        print("stream failover: published \(total), read \(seen.count) distinct offsets \(offsets.first ?? -1)…\(offsets.last ?? -1), gaps \(gaps), duplicates \(duplicates); recovered in \(recovery.map { "\($0)" } ?? "-") from node \(node) onto node \(TestCluster.node(of: connection) ?? 0)")
        #expect(seen.count == total)
        #expect(gaps == 0)
        #expect(recovery.map { $0 < .seconds(5) } == true)
        try await channel.deleteQueue(stream)
    }

    @Test("single active consumer on a quorum queue: the active one's node killed, the other takes over, nothing lost")
    func singleActiveConsumer() async throws {
        try await TestCluster.script("start")  // every node up, whatever an earlier test left
        let total = 2_000
        let queue = TestBroker.uniqueName("cluster.sac")
        let active = try await TestCluster.connect(first: 1, name: "cluster-sac-1")
        let standby = try await TestCluster.connect(first: 2, name: "cluster-sac-2")
        let publisher = try await TestCluster.connect(first: 3, name: "cluster-sac-publisher")
        defer { Task { await active.close(); await standby.close(); await publisher.close() } }
        let channel = try await publisher.openChannel()
        try await channel.declareQueue(queue, type: .quorum(.init(singleActiveConsumer: true)))
        try await channel.enablePublisherConfirms()

        let received = ConsumerTally()
        func consume(_ connection: AMQPConnection, _ name: String) async throws -> Task<Void, any Error> {
            let channel = try await connection.openChannel()
            try await channel.setPrefetch(count: 50)
            let consumer = try await channel.consume(queue: queue)
            return Task {
                for try await delivery in consumer {
                    let done = received.withLock { received in
                        received.byConsumer[name, default: 0] += 1
                        received.ids[Int(delivery.bodyString) ?? -1, default: 0] += 1
                        return received.ids.count >= total
                    }
                    try? await delivery.ack()
                    if done { return }
                }
            }
        }
        let first = try await consume(active, "first")
        let second = try await consume(standby, "second")
        var confirmations: [AMQPPublishConfirmation] = []
        for index in 0..<total / 2 { confirmations.append(try await channel.publish("\(index)", routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent))) }
        for confirmation in confirmations { try await confirmation.confirmed() }
        try await withTimeout(30, "the first half") {
            while received.withLock({ $0.ids.count }) < total / 2 { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(received.withLock { $0.byConsumer["second"] } == nil)  // only the active one got any

        let node = try #require(TestCluster.node(of: active))
        try await TestCluster.kill(node)
        confirmations.removeAll()
        for index in total / 2..<total { confirmations.append(try await channel.publish("\(index)", routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent))) }
        var confirmed = 0
        for confirmation in confirmations { if (try? await confirmation.confirmed()) != nil { confirmed += 1 } }
        try await withTimeout(60, "the second half") {
            while received.withLock({ $0.ids.count }) < total { try await Task.sleep(for: .milliseconds(20)) }
        }
        try await TestCluster.restart(node)
        first.cancel()
        second.cancel()
        let (byConsumer, ids) = received.withLock { ($0.byConsumer, $0.ids) }
        let lost = (0..<total).filter { ids[$0] == nil }.count
        print("single active consumer: published \(total) (second half confirmed \(confirmed)), received per consumer \(byConsumer), lost \(lost), duplicates \(ids.values.reduce(0) { $0 + $1 - 1 })")
        #expect(lost == 0)
        #expect(byConsumer["second", default: 0] > 0)  // it took over
        try await channel.deleteQueue(queue)
    }
}

/// What each consumer received, and how many times each message.
final class ConsumerTally: Sendable {
    private let state = Mutex<(byConsumer: [String: Int], ids: [Int: Int])>(([:], [:]))

    func withLock<Result>(_ body: (inout (byConsumer: [String: Int], ids: [Int: Int])) -> Result) -> Result {
        state.withLock { body(&$0) }
    }
}
