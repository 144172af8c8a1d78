#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import AMQPClient
import Synchronization
import Testing

@testable import AMQPEvents

@Suite("Events: a quick handler at concurrency 1 runs on the connection's thread")
struct HandlerPlacementTests {
    static let quick = Duration.microseconds(50)
    static let slow = Duration.milliseconds(5)

    @Test("a slow call moves the handler off; a run of quick calls, doubling each time, brings it back")
    func movesOffAndBack() {
        var placement = HandlerPlacement(quickLimit: .milliseconds(1))
        #expect(placement.onConnectionThread)
        for _ in 0..<10_000 { #expect(placement.record(Self.quick) == .stay) }
        #expect(placement.record(Self.slow) == .moveOff)
        #expect(!placement.onConnectionThread)
        // A slow call off the thread starts the run again.
        for _ in 0..<(HandlerPlacement.firstReturnAfter - 1) { #expect(placement.record(Self.quick) == .stay) }
        #expect(placement.record(Self.slow) == .stay)
        for _ in 0..<(HandlerPlacement.firstReturnAfter - 1) { #expect(placement.record(Self.quick) == .stay) }
        #expect(placement.record(Self.quick) == .moveOn)
        #expect(placement.onConnectionThread)
        // Exactly the limit is still quick.
        #expect(placement.record(.milliseconds(1)) == .stay)
        #expect(placement.record(Self.slow) == .moveOff)
        #expect(placement.quickCallsToReturn == 2 * HandlerPlacement.firstReturnAfter)
    }

    @Test("a handler that keeps being slow now and then ends up staying off; nil never uses the thread")
    func staysOff() {
        var placement = HandlerPlacement(quickLimit: .milliseconds(1))
        var moves = 0
        var returnedAfter: [Int] = []
        while moves < 10 {
            #expect(placement.record(Self.slow) == .moveOff)
            moves += 1
            guard placement.quickCallsToReturn != .max else { break }
            for _ in 0..<(placement.quickCallsToReturn - 1) { _ = placement.record(Self.quick) }
            #expect(placement.record(Self.quick) == .moveOn)
            returnedAfter.append(placement.quickCallsToReturn)
        }
        // Back after 1k, 2k, 4k, 8k, 16k, 32k and 64k quick calls; moved off an eighth time, never.
        #expect(returnedAfter == [1, 2, 4, 8, 16, 32, 64].map { $0 * 1_000 })
        #expect(moves == 8)
        for _ in 0..<100_000 { #expect(placement.record(Self.quick) == .stay) }
        #expect(!placement.onConnectionThread)

        var never = HandlerPlacement(quickLimit: nil)
        #expect(!never.onConnectionThread)
        for _ in 0..<10_000 { #expect(never.record(.zero) == .stay) }
        #expect(!never.onConnectionThread)
    }

    /// The name of the thread the caller runs on.
    static func threadName() -> String {
        var name = [UInt8](repeating: 0, count: 32)
        #if canImport(Glibc)
        let file = open("/proc/thread-self/comm", O_RDONLY)
        guard file >= 0 else { return "?" }
        defer { close(file) }
        let count = read(file, &name, name.count)
        return String(decoding: name.prefix(max(0, count)).prefix { $0 != 0 && $0 != 10 }, as: UTF8.self)
        #else
        pthread_getname_np(pthread_self(), &name, name.count)
        return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
        #endif
    }

    /// Sends `count` events and records the thread each handler call ran on; the call for
    /// `slowID` takes 5 ms (the handler's own work).
    static func threads(count: Int, slowID: Int?, quickHandlerLimit: Duration?) async throws -> [String] {
        let broker = InMemoryBroker()
        let connection = try await AMQPConnection.connect(to: broker)
        var configuration = EventBus.Configuration()
        configuration.quickHandlerLimit = quickHandlerLimit
        let bus = EventBus(connection: connection, configuration: configuration)
        let threads = Mutex<[String]>([])
        let subscription = EventSubscription.workQueue("placement.q").on(Ordered.self) { event, _ in
            threads.withLock { $0.append(Self.threadName()) }
            if event.id == slowID { try await Task.sleep(for: Self.slow) }
        }
        let running = try await bus.start(subscription)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await running.run() }
            for id in 0..<count { try await bus.send(Ordered(id: id), toQueue: "placement.q") }
            try await eventually("\(count) events") { threads.withLock { $0.count } == count }
            group.cancelAll()
        }
        await bus.close()
        await connection.close()
        return threads.withLock { $0 }
    }

    @Test("on the in-memory connection's thread until a call takes longer than the limit, then off it")
    func placedOnTheConnectionThread() async throws {
        let threads = try await Self.threads(count: 10, slowID: 4, quickHandlerLimit: .milliseconds(1))
        print("handler threads: \(threads)")
        #expect(threads.prefix(5).allSatisfy { $0 == "amqp-in-memory" })
        #expect(threads.dropFirst(5).allSatisfy { $0 != "amqp-in-memory" })

        let never = try await Self.threads(count: 5, slowID: nil, quickHandlerLimit: nil)
        #expect(never.allSatisfy { $0 != "amqp-in-memory" })
    }
}
