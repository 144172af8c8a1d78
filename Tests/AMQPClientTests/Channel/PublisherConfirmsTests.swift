import Testing

@testable import AMQPClient

@Suite("Channel: matching publisher confirms and returns")
struct PublisherConfirmsTests {
    static func publish(mandatory: Bool = false, routingKey: String = "q") -> PublishRequest {
        PublishRequest(
            exchange: "", routingKey: routingKey, mandatory: mandatory, properties: AMQPProperties(), body: [1, 2, 3],
            confirm: ConfirmTracker())
    }

    static func outcome(_ request: PublishRequest) async -> AMQPError.Code? {
        do {
            try await request.confirm!.wait()
            return nil
        } catch {
            return error.code
        }
    }

    @Test("single acks resolve their own publish, in any order")
    func singleOutOfOrder() async {
        var confirms = PublisherConfirms(keepsMessages: false)
        confirms.isSelected = true
        let requests = (0..<3).map { _ in Self.publish() }
        for request in requests { confirms.published(request) }
        confirms.confirm(3, multiple: false, acked: true)
        confirms.confirm(1, multiple: false, acked: false)
        #expect(confirms.unconfirmedCount == 1)
        #expect(await Self.outcome(requests[2]) == nil)
        #expect(await Self.outcome(requests[0]) == .publishNacked)
        confirms.confirm(2, multiple: false, acked: true)
        #expect(await Self.outcome(requests[1]) == nil)
        #expect(confirms.unconfirmedCount == 0)
    }

    @Test("a multiple ack or nack resolves every publish up to its tag")
    func multiple() async {
        var confirms = PublisherConfirms(keepsMessages: false)
        confirms.isSelected = true
        let requests = (0..<4).map { _ in Self.publish() }
        for request in requests { confirms.published(request) }
        confirms.confirm(2, multiple: true, acked: true)
        #expect(confirms.unconfirmedCount == 2)
        confirms.confirm(4, multiple: true, acked: false)
        #expect(confirms.unconfirmedCount == 0)
        #expect(await Self.outcome(requests[0]) == nil)
        #expect(await Self.outcome(requests[1]) == nil)
        #expect(await Self.outcome(requests[2]) == .publishNacked)
        #expect(await Self.outcome(requests[3]) == .publishNacked)
    }

    @Test("a return marks the oldest matching mandatory publish; its ack then reports the return")
    func returnThenAck() async {
        var confirms = PublisherConfirms(keepsMessages: false)
        confirms.isSelected = true
        let first = Self.publish(mandatory: true, routingKey: "nowhere")
        let second = Self.publish(mandatory: true, routingKey: "nowhere")
        let other = Self.publish(mandatory: false, routingKey: "nowhere")
        for request in [other, first, second] { confirms.published(request) }
        let returned = AMQPError(code: .messageReturned, message: "returned", replyCode: 312)
        let matched1 = confirms.returned(exchange: "", routingKey: "nowhere", error: returned)
        #expect(matched1)
        let matched2 = confirms.returned(exchange: "", routingKey: "elsewhere", error: returned)
        #expect(!matched2)
        confirms.confirm(3, multiple: true, acked: true)
        #expect(await Self.outcome(other) == nil)
        #expect(await Self.outcome(first) == .messageReturned)
        #expect(await Self.outcome(second) == nil)
    }

    @Test("without confirm.select nothing is tracked; a loss fails what was unconfirmed or keeps it to republish")
    func lossAndRepublish() async {
        var unselected = PublisherConfirms(keepsMessages: false)
        unselected.published(Self.publish())
        #expect(unselected.unconfirmedCount == 0)

        var failing = PublisherConfirms(keepsMessages: false)
        failing.isSelected = true
        let lost = Self.publish()
        failing.published(lost)
        failing.resetForNewConnection(lost: AMQPError(code: .connectionLost, message: "cut"))
        #expect(await Self.outcome(lost) == .outcomeUnknown)

        var keeping = PublisherConfirms(keepsMessages: true)
        keeping.isSelected = true
        let kept = [Self.publish(routingKey: "a"), Self.publish(routingKey: "b")]
        for request in kept { keeping.published(request) }
        keeping.resetForNewConnection(lost: AMQPError(code: .connectionLost, message: "cut"))
        #expect(keeping.takeMessagesToRepublish().map(\.routingKey) == ["a", "b"])
        // Numbered from 1 again on the new connection.
        for request in kept { keeping.published(request) }
        keeping.confirm(2, multiple: true, acked: true)
        #expect(await Self.outcome(kept[0]) == nil)
        #expect(await Self.outcome(kept[1]) == nil)
    }
}

@Suite("Channel: a publish's confirmation")
struct PublishConfirmationTests {
    @Test("confirmed() on a channel that is not in confirm mode throws instead of claiming a verdict")
    func untracked() async {
        let confirmation = AMQPPublishConfirmation(tracker: nil)
        #expect(!confirmation.isTracked)
        let error = await #expect(throws: AMQPError.self) { try await confirmation.confirmed() }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("enablePublisherConfirms") == true)
    }

    @Test("confirmed() returns once the broker acked, throws when it nacked")
    func tracked() async throws {
        let acked = ConfirmTracker()
        acked.resolve(acked: true)
        try await AMQPPublishConfirmation(tracker: acked).confirmed()
        let nacked = ConfirmTracker()
        nacked.resolve(acked: false)
        let error = await #expect(throws: AMQPError.self) { try await AMQPPublishConfirmation(tracker: nacked).confirmed() }
        #expect(error?.code == .publishNacked)
    }
}

@Suite("Channel: bounding unconfirmed publishes")
struct UnconfirmedPublishLimiterTests {
    @Test("past the limit a publisher waits until a confirm gives a place back")
    func waitsForAPlace() async throws {
        let limiter = UnconfirmedPublishLimiter(limit: 2)
        try await limiter.acquire()
        try await limiter.acquire()
        let third = Task { try await limiter.acquire() }
        let tracker = ConfirmTracker(limiter: limiter)
        tracker.resolve(acked: true)  // one publish confirmed: its place goes to the waiter
        try await value(of: third, "the third publisher")
        #expect(limiter.outstanding == 2)
        tracker.resolve(acked: true)  // an outcome gives its place back only once
        #expect(limiter.outstanding == 2)
        ConfirmTracker(limiter: limiter).fail(AMQPError(code: .outcomeUnknown, message: "closed"))
        #expect(limiter.outstanding == 1)
    }

    @Test("a waiter whose task is cancelled stops waiting at once, takes no place, and the next waiter gets it")
    func cancelledWaiter() async throws {
        let limiter = UnconfirmedPublishLimiter(limit: 1)
        try await limiter.acquire()
        let cancelled = Task { try await limiter.acquire() }
        try await Self.waitUntil { limiter.waiting == 1 }
        let next = Task { try await limiter.acquire() }
        try await Self.waitUntil { limiter.waiting == 2 }
        cancelled.cancel()
        let error = await #expect(throws: AMQPError.self) { try await value(of: cancelled, "the cancelled publisher") }
        #expect(error?.code == .cancelled)
        ConfirmTracker(limiter: limiter).resolve(acked: true)  // the place skips the cancelled waiter
        try await value(of: next, "the next publisher")
        #expect(limiter.outstanding == 1)
    }

    /// Yields until `condition` holds, for at most 5 s.
    static func waitUntil(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            try #require(ContinuousClock.now < deadline, "the condition did not hold within 5 s")
            await Task.yield()
        }
    }
}
