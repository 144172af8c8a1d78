import AMQPClient
import AMQPEvents
import Foundation
import Testing

@Suite("Events: request/reply over direct reply-to")
struct RequestReplyTests {
    /// Runs a responder on `queue` (echoing, after the request's delay; failing when asked) while `body` runs.
    func withResponder(
        _ bus: EventBus, queue: String, concurrency: Int = 8, _ body: () async throws -> Void
    ) async throws {
        try await bus.declareResponder(queue: queue)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await bus.respond(to: queue, with: Echo.self, concurrency: concurrency) { request, _ in
                    if request.delayMilliseconds > 0 { try await Task.sleep(for: .milliseconds(request.delayMilliseconds)) }
                    if request.fail { throw EchoRefused() }
                    return Echoed(text: request.text.uppercased())
                }
            }
            try await body()
            group.cancelAll()
        }
    }

    struct EchoRefused: Error {}

    @Test("many requests in flight on one channel each get their own reply")
    func manyInFlight() async throws {
        let total = 200
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).echo"
            queues.withLock { $0.append(queue) }
            try await withResponder(bus, queue: queue) {
                let replies = try await withThrowingTaskGroup(of: (String, String).self) { group in
                    for index in 0..<total {
                        group.addTask {
                            let reply = try await bus.request(Echo(text: "hello \(index)", delayMilliseconds: index % 3), to: queue)
                            return ("hello \(index)", reply.text)
                        }
                    }
                    var replies: [(String, String)] = []
                    for try await reply in group { replies.append(reply) }
                    return replies
                }
                print("request/reply: \(total) requests, \(replies.count) replies")
                #expect(replies.count == total)
                #expect(replies.allSatisfy { $0.0.uppercased() == $0.1 })
            }
        }
    }

    @Test("a slow responder times the request out; a failing one reports its error")
    func timeoutAndFailure() async throws {
        try await withEventBus { bus, domain, queues in
            let queue = "\(domain).echo"
            queues.withLock { $0.append(queue) }
            try await withResponder(bus, queue: queue) {
                let start = ContinuousClock.now
                let slow = await #expect(throws: EventError.self) {
                    try await bus.request(Echo(text: "slow", delayMilliseconds: 5_000), to: queue, timeout: .milliseconds(300))
                }
                #expect(slow?.code == .timedOut)
                // Timed out, not answered late: well before the responder's 5 s (slack for a machine busy with the whole suite).
                #expect(start.duration(to: .now) < .seconds(4))
                let failed = await #expect(throws: EventError.self) {
                    try await bus.request(Echo(text: "no", fail: true), to: queue)
                }
                #expect(failed?.code == .responderFailed)
                #expect(failed?.message.contains("EchoRefused") == true)
                // The responder still answers after both.
                let reply = try await bus.request(Echo(text: "still here"), to: queue)
                #expect(reply.text == "STILL HERE")
            }
        }
    }

    @Test("with the responder down: no queue is noResponder, a queue nobody consumes times out")
    func responderDown() async throws {
        try await withEventBus { bus, domain, queues in
            let missing = await #expect(throws: EventError.self) {
                try await bus.request(Echo(text: "anyone?"), to: "\(domain).nobody", timeout: .seconds(2))
            }
            #expect(missing?.code == .noResponder)

            let queue = "\(domain).down"
            queues.withLock { $0.append(queue) }
            try await bus.declareResponder(queue: queue)
            let down = await #expect(throws: EventError.self) {
                try await bus.request(Echo(text: "anyone?"), to: queue, timeout: .milliseconds(300))
            }
            #expect(down?.code == .timedOut)
            // The request expires in the queue: a responder that starts later does not act on it.
            _ = try await withTestConnection { admin in
                try await admin.openChannel().waitForQueue(queue, within: 5, "the request to expire") { $0.messageCount == 0 }
            }
        }
    }
}
