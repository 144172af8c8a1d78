import Testing

@testable import AMQPClient

@Suite("Channel: matching replies to requests")
struct PendingRepliesTests {
    /// Records what each request was completed with.
    final class Outcomes {
        var results: [String: Result<ServerMethod, AMQPError>] = [:]

        func request(_ name: String, _ replies: [AMQPMethodID]) -> PendingReply {
            PendingReply(replies: replies) { self.results[name] = $0 }
        }

        func reply(_ name: String) -> AMQPMethodID? {
            guard case .success(let method) = results[name] else { return nil }
            return method.replyID
        }
    }

    @Test("a reply completes the oldest request it answers, even when cancel-ok overtakes nothing")
    func oldestFirst() {
        let outcomes = Outcomes()
        var pending = PendingReplies()
        pending.append(outcomes.request("declare 1", [.queueDeclareOk]))
        pending.append(outcomes.request("declare 2", [.queueDeclareOk]))
        let resolved1 = pending.resolveNext(.queueDeclareOk(AMQPQueueInfo(name: "a", messageCount: 0, consumerCount: 0)))
        #expect(resolved1)
        #expect(outcomes.results.keys.sorted() == ["declare 1"])
        let resolved2 = pending.resolveNext(.queueDeclareOk(AMQPQueueInfo(name: "b", messageCount: 0, consumerCount: 0)))
        #expect(resolved2)
        #expect(outcomes.results.keys.sorted() == ["declare 1", "declare 2"])
        #expect(pending.isEmpty)
    }

    @Test("a reply to a later request overtakes a basic.cancel still waiting for its cancel-ok")
    func cancelOkOvertaken() {
        let outcomes = Outcomes()
        var pending = PendingReplies()
        pending.append(outcomes.request("cancel", [.basicCancelOk]))
        pending.append(outcomes.request("qos", [.basicQosOk]))
        let resolved3 = pending.resolveNext(.ok(.basicQosOk))
        #expect(resolved3)
        #expect(outcomes.reply("qos") == .basicQosOk)
        #expect(outcomes.results["cancel"] == nil)
        let resolved4 = pending.resolveNext(.cancelOk(consumerTag: "c1"))
        #expect(resolved4)
        #expect(outcomes.reply("cancel") == .basicCancelOk)
    }

    @Test("basic.get is answered by get-ok or get-empty; a reply nobody waits for is reported")
    func getAndUnexpected() {
        let outcomes = Outcomes()
        var pending = PendingReplies()
        var get = outcomes.request("get", [.basicGetOk, .basicGetEmpty])
        get.tracksDelivery = true
        pending.append(get)
        #expect(pending.oldest(answeredBy: .basicGetOk)?.tracksDelivery == true)
        #expect(pending.oldest(answeredBy: .basicQosOk) == nil)
        let resolved5 = pending.resolveNext(.ok(.basicQosOk))
        #expect(!resolved5)
        let resolved6 = pending.resolveNext(.getEmpty)
        #expect(resolved6)
        #expect(outcomes.reply("get") == .basicGetEmpty)
    }

    @Test("closing completes every request: as close-ok when the application closed, else with the error")
    func completeAll() {
        let outcomes = Outcomes()
        var pending = PendingReplies()
        pending.append(outcomes.request("a", [.exchangeDeclareOk]))
        pending.completeAll(failingWith: nil)
        #expect(outcomes.reply("a") == .channelCloseOk)

        pending.append(outcomes.request("b", [.exchangeDeclareOk]))
        let error = AMQPError(code: .connectionLost, message: "gone")
        pending.completeAll(failingWith: error)
        guard case .failure(let failure) = outcomes.results["b"] else {
            Issue.record("b was not failed")
            return
        }
        #expect(failure == error)
        #expect(pending.isEmpty)
    }
}
