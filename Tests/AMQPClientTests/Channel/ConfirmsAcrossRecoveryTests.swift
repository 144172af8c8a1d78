import Testing

@testable import AMQPClient

/// Publisher confirms and returns when the connection is lost and recovers: the broker numbers
/// a new connection's publishes from 1, and only what the application asked to keep is
/// published again.
@Suite("Channel: confirms and returns across a recovery")
struct ConfirmsAcrossRecoveryTests {
    static let cut = AMQPError(code: .connectionLost, message: "cut")

    static func publish(_ key: String, mandatory: Bool = false) -> PublishRequest {
        PublishRequest(
            exchange: "", routingKey: key, mandatory: mandatory, properties: AMQPProperties(), body: [1], confirm: ConfirmTracker())
    }

    static func outcome(_ request: PublishRequest) async -> AMQPError.Code? {
        do {
            try await request.confirm!.wait()
            return nil
        } catch {
            return error.code
        }
    }

    static func keeping() -> PublisherConfirms {
        var confirms = PublisherConfirms(keepsMessages: true)
        confirms.isSelected = true
        return confirms
    }

    @Test("what the broker confirmed before the loss stays confirmed; only the rest is published again")
    func confirmedBeforeLoss() async {
        var confirms = Self.keeping()
        let sent = ["a", "b", "c"].map { Self.publish($0) }
        for request in sent { confirms.published(request) }
        confirms.confirm(1, multiple: false, acked: true)
        confirms.resetForNewConnection(lost: Self.cut)
        #expect(await Self.outcome(sent[0]) == nil)
        #expect(confirms.takeMessagesToRepublish().map(\.routingKey) == ["b", "c"])
    }

    @Test("after the loss the broker's numbers start at 1 again: an ack for 1 confirms the first message republished")
    func numberingRestarts() async {
        var confirms = Self.keeping()
        let sent = ["a", "b"].map { Self.publish($0) }
        for request in sent { confirms.published(request) }
        confirms.resetForNewConnection(lost: Self.cut)
        for request in confirms.takeMessagesToRepublish() { confirms.published(request) }
        confirms.confirm(1, multiple: false, acked: true)
        #expect(await Self.outcome(sent[0]) == nil)
        #expect(confirms.unconfirmedCount == 1)
        confirms.confirm(2, multiple: false, acked: false)
        #expect(await Self.outcome(sent[1]) == .publishNacked)
    }

    @Test("a publish made after the loss waits behind the republished ones and gets the next number")
    func newPublishAfterRepublish() async {
        var confirms = Self.keeping()
        let old = Self.publish("old")
        confirms.published(old)
        confirms.resetForNewConnection(lost: Self.cut)
        for request in confirms.takeMessagesToRepublish() { confirms.published(request) }
        let new = Self.publish("new")
        confirms.published(new)
        confirms.confirm(2, multiple: false, acked: true)
        #expect(await Self.outcome(new) == nil)
        #expect(confirms.unconfirmedCount == 1, "the republished one still waits")
    }

    @Test("a republish cut short by another loss keeps the rest, in order, for the next attempt")
    func republishCutShort() {
        var confirms = Self.keeping()
        for key in ["a", "b", "c"] { confirms.published(Self.publish(key)) }
        confirms.resetForNewConnection(lost: Self.cut)
        let toRepublish = confirms.takeMessagesToRepublish()
        // "a" was written before the second loss; "b" and "c" were not, and are put back as the driver does.
        for request in toRepublish { confirms.published(request) }
        confirms.resetForNewConnection(lost: Self.cut)
        #expect(confirms.takeMessagesToRepublish().map(\.routingKey) == ["a", "b", "c"])
    }

    @Test("a mandatory message returned after the recovery reports the return, not the ack")
    func returnAfterRecovery() async {
        var confirms = Self.keeping()
        let mandatory = Self.publish("nowhere", mandatory: true)
        confirms.published(mandatory)
        confirms.resetForNewConnection(lost: Self.cut)
        for request in confirms.takeMessagesToRepublish() { confirms.published(request) }
        let returned = AMQPError(code: .messageReturned, message: "no route", replyCode: 312)
        let matched = confirms.returned(exchange: "", routingKey: "nowhere", error: returned)
        #expect(matched)
        confirms.confirm(1, multiple: false, acked: true)
        #expect(await Self.outcome(mandatory) == .messageReturned)
    }

    @Test("without keeping messages, a loss fails every unconfirmed publish as outcome unknown, and nothing is republished")
    func notKept() async {
        var confirms = PublisherConfirms(keepsMessages: false)
        confirms.isSelected = true
        let sent = ["a", "b"].map { Self.publish($0) }
        for request in sent { confirms.published(request) }
        confirms.resetForNewConnection(lost: Self.cut)
        #expect(confirms.takeMessagesToRepublish().isEmpty)
        for request in sent { #expect(await Self.outcome(request) == .outcomeUnknown) }
    }

    @Test("an ack for a number nobody waits for (a late one from before the loss) changes nothing")
    func staleAck() {
        var confirms = Self.keeping()
        confirms.published(Self.publish("a"))
        let confirmed = confirms.confirm(7, multiple: false, acked: true)
        #expect(confirmed == 0)
        #expect(confirms.unconfirmedCount == 1)
    }
}

@Suite("Channel: call deadlines on an injected clock")
struct CallDeadlineTests {
    static let start = ContinuousClock.now

    static func request(deadline: ContinuousClock.Instant?, _ completed: @escaping (Result<ServerMethod, AMQPError>) -> Void = { _ in })
        -> PendingReply
    {
        var reply = PendingReply(replies: [.queueDeclareOk], complete: completed)
        reply.deadline = deadline
        return reply
    }

    @Test("a request expires at its deadline, not a moment before")
    func expiresAtDeadline() {
        var pending = PendingReplies()
        pending.append(Self.request(deadline: Self.start + .seconds(2)))
        #expect(!pending.hasExpired(at: Self.start + .milliseconds(1_999)))
        #expect(pending.hasExpired(at: Self.start + .seconds(2)))
    }

    @Test("the earliest deadline is the next to check; requests without one never expire")
    func earliest() {
        var pending = PendingReplies()
        pending.append(Self.request(deadline: nil))
        #expect(pending.earliestDeadline == nil)
        #expect(!pending.hasExpired(at: Self.start + .seconds(3_600)))
        pending.append(Self.request(deadline: Self.start + .seconds(9)))
        pending.append(Self.request(deadline: Self.start + .seconds(4)))
        #expect(pending.earliestDeadline == Self.start + .seconds(4))
    }

    @Test("a reply in time completes its request and takes its deadline with it")
    func replyInTime() {
        var pending = PendingReplies()
        var outcome: Result<ServerMethod, AMQPError>?
        pending.append(Self.request(deadline: Self.start + .seconds(1)) { outcome = $0 })
        pending.resolveNext(.queueDeclareOk(AMQPQueueInfo(name: "q", messageCount: 0, consumerCount: 0)))
        #expect(pending.earliestDeadline == nil)
        #expect(!pending.hasExpired(at: Self.start + .seconds(10)))
        if case .success = outcome {} else { Issue.record("not completed: \(String(describing: outcome))") }
    }

    @Test("a timed-out call fails everything waiting on the channel with the timeout")
    func timeoutFailsAll() {
        var pending = PendingReplies()
        var codes: [AMQPError.Code] = []
        for _ in 0..<2 {
            pending.append(
                Self.request(deadline: Self.start + .seconds(1)) { if case .failure(let error) = $0 { codes.append(error.code) } })
        }
        pending.completeAll(failingWith: AMQPError.callTimedOut(channel: 1, after: .seconds(1)))
        #expect(codes == [.timedOut, .timedOut])
        #expect(pending.isEmpty)
    }
}
