import Testing

@testable import AMQPClient

/// The connection's life, loss and recovery, driven on a clock of the test's own: every event
/// carries `now`, and the backoff's jitter is fixed.
@Suite("Connection: open, close, loss and recovery, as a state machine")
struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine
    typealias Action = ConnectionStateMachine.Action
    typealias Recovery = AMQPConnection.Configuration.Recovery

    static let start = ContinuousClock.now
    static func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int(seconds * 1000)) }

    static let socketError = AMQPError(code: .connectionLost, message: "the connection failed: connection closed unexpectedly")
    static let queueGone = AMQPError.channelClosedByBroker(
        channel: 1, replyCode: 404, replyText: "NOT_FOUND - no queue 'q'", classID: 60, methodID: 20)

    /// A machine whose backoff is exact: 1 s, doubling to at most 8 s; attempts time out after 5 s.
    static func machine(
        recovery: Recovery = Recovery(initialDelay: .seconds(1), maximumDelay: .seconds(8), attemptTimeout: .seconds(5)),
        closeTimeout: Duration = .seconds(2)
    ) -> Machine {
        var machine = Machine(configuration: .init(recovery: recovery, closeTimeout: closeTimeout, jitter: { 1.0 }))
        machine.connected(at: at(0))
        return machine
    }

    /// Lost at 10 s, backing off until 11 s.
    static func lostMachine(recovery: Recovery? = nil) -> Machine {
        var machine = recovery.map { Self.machine(recovery: $0) } ?? Self.machine()
        _ = machine.lost(socketError, at: at(100))
        return machine
    }

    /// Connected again at 101 s for attempt 1, with `plan`.
    static func restoring(_ plan: RecoveryPlan, recovery: Recovery? = nil) -> (Machine, [Action]) {
        var machine = lostMachine(recovery: recovery)
        _ = machine.tick(at: at(101))
        let actions = machine.connected(at: at(101.1), plan: plan)
        return (machine, actions)
    }

    static let onePlainChannel = RecoveryPlan(channels: [.init(id: 1)])

    // MARK: Opening and closing

    @Test("a new machine connects first; once connected it is open, with no deadline")
    func opens() {
        var machine = Machine(configuration: .init(recovery: .init(), closeTimeout: .seconds(1)))
        #expect(machine.state == .connecting)
        #expect(machine.lost(Self.socketError, at: Self.at(0)).isEmpty, "a failed first connect is the caller's to report")
        machine.connected(at: Self.at(0))
        #expect(machine.isOpen)
        #expect(machine.nextDeadline == nil)
    }

    @Test("close: connection.close goes out, with the close timeout as deadline; close-ok ends it as the application asked")
    func closeHandshake() {
        var machine = Self.machine()
        #expect(machine.closeRequested(at: Self.at(1)) == [.sendConnectionClose])
        #expect(machine.state == .closing(deadline: Self.at(3)))
        #expect(machine.nextDeadline == Self.at(3))
        #expect(machine.closeOk(at: Self.at(1.5)) == [.tearDown(.connectionClosedByApplication, byApplication: true)])
        #expect(machine.isClosed)
    }

    @Test("close twice sends one connection.close")
    func closeTwice() {
        var machine = Self.machine()
        _ = machine.closeRequested(at: Self.at(1))
        #expect(machine.closeRequested(at: Self.at(1.1)).isEmpty)
    }

    @Test("a broker that never confirms the close: at the deadline the socket is dropped, not before")
    func closeTimesOut() {
        var machine = Self.machine()
        _ = machine.closeRequested(at: Self.at(1))
        #expect(machine.tick(at: Self.at(2.999)).isEmpty)
        #expect(machine.tick(at: Self.at(3)) == [.closeTimedOut, .tearDown(.connectionClosedByApplication, byApplication: true)])
        #expect(machine.tick(at: Self.at(10)).isEmpty, "torn down once")
    }

    @Test("a close after a close went unanswered does not wait for the broker again")
    func closeAfterUnresponsiveBroker() {
        var machine = Self.machine()
        _ = machine.closeRequested(at: Self.at(1), brokerUnresponsive: true)
        #expect(machine.nextDeadline == Self.at(1))
        #expect(machine.tick(at: Self.at(1)).count == 2)
    }

    @Test("the broker's close crosses the client's: close-ok is answered and the connection ends as the application asked, with the broker's reason")
    func closesCross() {
        var machine = Self.machine()
        _ = machine.closeRequested(at: Self.at(1))
        let actions = machine.brokerClosed(replyCode: 320, replyText: "CONNECTION_FORCED - shutdown", at: Self.at(1.1))
        #expect(actions.first == .sendConnectionCloseOk)
        guard case .tearDown(let error, true) = actions.last else {
            Issue.record("expected a tear-down by the application, got \(actions)")
            return
        }
        #expect(error.replyCode == 320)
        #expect(machine.isClosed)
        #expect(machine.closeOk(at: Self.at(1.2)).isEmpty, "the close-ok that crossed arrives late and changes nothing")
    }

    @Test("the socket fails while the client closes: it ends as closed by the application, no recovery")
    func lostWhileClosing() {
        var machine = Self.machine()
        _ = machine.closeRequested(at: Self.at(1))
        #expect(machine.lost(Self.socketError, at: Self.at(1.5)) == [.tearDown(.connectionClosedByApplication, byApplication: true)])
    }

    @Test("connection.close-ok the client never asked for is a protocol violation: the connection is lost (and recovers)")
    func unsolicitedCloseOk() {
        var machine = Self.machine()
        let actions = machine.closeOk(at: Self.at(1))
        guard case .beginRecovery(let error) = actions.first else {
            Issue.record("expected a recovery, got \(actions)")
            return
        }
        #expect(error.code == .protocolError && error.replyCode == 505)
        #expect(error.message.contains("10.51"))
    }

    @Test("the broker closes an open connection: close-ok first, then the loss (403 is access refused)")
    func brokerCloses() {
        var machine = Self.machine(recovery: .disabled)
        let actions = machine.brokerClosed(replyCode: 403, replyText: "ACCESS_REFUSED", at: Self.at(1))
        #expect(actions.count == 2)
        #expect(actions.first == .sendConnectionCloseOk)
        guard case .tearDown(let error, false) = actions.last else {
            Issue.record("expected a failure, got \(actions)")
            return
        }
        #expect(error.code == .accessRefused)
        #expect(error.replyText == "ACCESS_REFUSED")
    }

    @Test("without recovery a loss ends the connection with the error")
    func lostWithoutRecovery() {
        var machine = Self.machine(recovery: .disabled)
        #expect(machine.lost(Self.socketError, at: Self.at(1)) == [.tearDown(Self.socketError, byApplication: false)])
        #expect(machine.isClosed)
        #expect(machine.lost(Self.socketError, at: Self.at(2)).isEmpty)
    }

    // MARK: Backoff

    @Test("a loss begins recovery and backs off the initial delay before attempt 1")
    func lossBeginsRecovery() {
        var machine = Self.machine()
        #expect(machine.lost(Self.socketError, at: Self.at(100)) == [.beginRecovery(Self.socketError)])
        #expect(machine.recovery?.attempt == 1)
        #expect(machine.recovery?.phase == .waiting(until: Self.at(101)))
        #expect(machine.tick(at: Self.at(100.999)).isEmpty)
        #expect(machine.tick(at: Self.at(101)) == [.connect(attempt: 1, deadline: Self.at(106))])
        #expect(machine.recovery?.phase == .connecting(deadline: Self.at(106)))
    }

    @Test("a second loss while backing off changes nothing: there is no connection to lose")
    func lossWhileWaiting() {
        var machine = Self.lostMachine()
        #expect(machine.lost(Self.socketError, at: Self.at(100.5)).isEmpty)
        #expect(machine.recovery?.phase == .waiting(until: Self.at(101)))
    }

    @Test("failed attempts back off 1, 2, 4, 8, 8 seconds")
    func backoffGrows() {
        var machine = Self.lostMachine()
        var now = Self.at(101)
        var waits: [Duration] = []
        for attempt in 1...5 {
            #expect(machine.tick(at: now) == [.connect(attempt: attempt, deadline: now + .seconds(5))])
            let actions = machine.attemptFailed(Self.socketError, at: now)
            #expect(actions == [.attemptFailed(attempt: attempt, Self.socketError)])
            guard case .waiting(let until) = machine.recovery?.phase else {
                Issue.record("not waiting after attempt \(attempt)")
                return
            }
            waits.append(now.duration(to: until))
            now = until
        }
        #expect(waits == [.seconds(2), .seconds(4), .seconds(8), .seconds(8), .seconds(8)])
    }

    @Test("the jitter scales each wait into its upper half")
    func jitter() {
        var machine = Machine(
            configuration: .init(recovery: Recovery(initialDelay: .seconds(1)), closeTimeout: .seconds(1), jitter: { 0.5 }))
        machine.connected(at: Self.at(0))
        _ = machine.lost(Self.socketError, at: Self.at(100))
        #expect(machine.recovery?.phase == .waiting(until: Self.at(100.5)))
    }

    @Test("after maximumAttempts failed attempts it gives up with the last error")
    func givesUp() {
        var machine = Self.lostMachine(recovery: Recovery(initialDelay: .seconds(1), maximumAttempts: 2, attemptTimeout: .seconds(5)))
        _ = machine.tick(at: Self.at(101))
        _ = machine.attemptFailed(Self.socketError, at: Self.at(101))
        _ = machine.tick(at: Self.at(103))
        let refused = AMQPError(code: .connectionFailed, message: "connection refused")
        let actions = machine.attemptFailed(refused, at: Self.at(103))
        #expect(actions.count == 2)
        #expect(actions.first == .attemptFailed(attempt: 2, refused))
        guard case .tearDown(let error, false) = actions.last else {
            Issue.record("expected to give up, got \(actions)")
            return
        }
        #expect(error.code == .connectionLost)
        #expect(error.message.contains("after 2 attempts") && error.message.contains("connection refused"))
        #expect(machine.isClosed)
    }

    @Test("lost again soon after it recovered, the backoff goes on from the attempts that recovery took")
    func lostSoonAfterRecovery() {
        var machine = Self.lostMachine()
        _ = machine.tick(at: Self.at(101))
        _ = machine.attemptFailed(Self.socketError, at: Self.at(101))
        _ = machine.tick(at: Self.at(103))
        #expect(machine.connected(at: Self.at(103), plan: RecoveryPlan(channels: [])) == [.recovered(attempt: 2)])
        #expect(machine.isOpen)
        _ = machine.lost(Self.socketError, at: Self.at(110))
        #expect(machine.recovery?.attempt == 3, "lost 7 s after recovering: the third attempt")
        #expect(machine.recovery?.phase == .waiting(until: Self.at(114)))
    }

    @Test("lost long after it recovered, the backoff starts afresh")
    func lostLongAfterRecovery() {
        var machine = Self.lostMachine()
        _ = machine.tick(at: Self.at(101))
        _ = machine.attemptFailed(Self.socketError, at: Self.at(101))
        _ = machine.tick(at: Self.at(103))
        _ = machine.connected(at: Self.at(103), plan: RecoveryPlan(channels: []))
        _ = machine.lost(Self.socketError, at: Self.at(140))
        #expect(machine.recovery?.attempt == 1)
    }

    @Test("the application closes while the connection backs off: it ends at once, as asked")
    func closeWhileWaiting() {
        var machine = Self.lostMachine()
        #expect(machine.closeRequested(at: Self.at(100.5)) == [.tearDown(.connectionClosedByApplication, byApplication: true)])
        #expect(machine.isClosed)
        #expect(machine.tick(at: Self.at(200)).isEmpty)
    }

    @Test("an attempt that takes longer than attemptTimeout fails, connecting or restoring")
    func attemptTimesOut() {
        var machine = Self.lostMachine()
        _ = machine.tick(at: Self.at(101))
        #expect(machine.tick(at: Self.at(105.9)).isEmpty)
        let actions = machine.tick(at: Self.at(106))
        guard case .attemptFailed(1, let error) = actions.first else {
            Issue.record("expected attempt 1 to fail, got \(actions)")
            return
        }
        #expect(error.code == .connectTimeout)

        var (restoring, _) = Self.restoring(Self.onePlainChannel)
        #expect(restoring.nextDeadline == Self.at(106))
        #expect(restoring.tick(at: Self.at(106)).first.map { if case .attemptFailed = $0 { true } else { false } } == true)
    }

    // MARK: Restoring

    @Test("connected: the plan's steps go out one at a time, each after the reply to the one before")
    func stepsInOrder() {
        let plan = RecoveryPlan(
            channels: [
                .init(id: 2, prefetch: [.init(count: 10, global: true), .init(count: 5, global: false)], confirmMode: true),
                .init(id: 1, consumerTags: ["c1"]),
            ])
        var (machine, actions) = Self.restoring(plan)
        var sent: [RecoveryStep] = []
        while case .send(let step)? = actions.first {
            sent.append(step)
            guard let reply = step.reply else { break }
            actions = machine.recoveryReply(.ok(reply), on: step.channel, at: Self.at(102)) ?? []
        }
        #expect(
            sent == [
                .openChannel(1), .openChannel(2), .setPrefetch(channel: 2, .init(count: 5, global: false)),
                .setPrefetch(channel: 2, .init(count: 10, global: true)), .selectConfirms(channel: 2),
                .consume(channel: 1, consumerTag: "c1"),
            ])
        #expect(actions == [.recovered(attempt: 1)])
        #expect(machine.isOpen)
    }

    @Test("consume-ok is matched by its reply id, whatever the tag")
    func consumeOk() {
        var (machine, _) = Self.restoring(RecoveryPlan(channels: [.init(id: 1, consumerTags: ["c1"])]))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        #expect(machine.recovery?.step == .consume(channel: 1, consumerTag: "c1"))
        #expect(machine.recoveryReply(.consumeOk(consumerTag: "c1"), on: 1, at: Self.at(102)) == [.recovered(attempt: 1)])
    }

    @Test("a frame on another channel, or another method, is not recovery's: it is handled as usual")
    func otherFramesPassThrough() {
        var (machine, _) = Self.restoring(RecoveryPlan(channels: [.init(id: 1), .init(id: 2)]))
        #expect(machine.recoveryReply(.ok(.channelOpenOk), on: 2, at: Self.at(102)) == nil)
        #expect(
            machine.recoveryReply(
                .deliver(consumerTag: "c", deliveryTag: 1, redelivered: true, exchange: "", routingKey: "q"), on: 1,
                at: Self.at(102)) == nil)
        #expect(machine.recoveryReply(.ok(.basicQosOk), on: 1, at: Self.at(102)) == nil, "not the reply the step waits for")
        #expect(machine.recovery?.step == .openChannel(1))
    }

    @Test("nothing is recovery's while the connection is open")
    func noRecoveryRepliesWhenOpen() {
        var machine = Self.machine()
        #expect(machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(1)) == nil)
        #expect(machine.stepDone(.republish(channel: 1), at: Self.at(1)).isEmpty)
    }

    @Test("the broker refuses to reopen a channel: close-ok answers it, the channel is abandoned with its consumers, the rest goes on")
    func channelRefused() {
        var (machine, _) = Self.restoring(
            RecoveryPlan(channels: [.init(id: 1, consumerTags: ["c1"], republishes: true), .init(id: 2, consumerTags: ["c2"])]))
        let error = AMQPError.channelClosedByBroker(channel: 1, replyCode: 530, replyText: "NOT_ALLOWED", classID: 20, methodID: 10)
        let actions = machine.recoveryReply(
            .channelClose(replyCode: 530, replyText: "NOT_ALLOWED", classID: 20, methodID: 10), on: 1, at: Self.at(102))
        #expect(actions == [.sendChannelCloseOk(1), .abandonChannel(1, error), .send(.openChannel(2))])
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 2, at: Self.at(102))
        #expect(machine.recovery?.step == .consume(channel: 2, consumerTag: "c2"), "channel 1's consumer and republish are gone")
        #expect(machine.recoveryReply(.consumeOk(consumerTag: "c2"), on: 2, at: Self.at(102)) == [.recovered(attempt: 1)])
    }

    @Test("a refused prefetch abandons its channel too")
    func prefetchRefused() {
        var (machine, _) = Self.restoring(
            RecoveryPlan(channels: [.init(id: 1, prefetch: [.init(count: 1, global: false)], confirmMode: true)]))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        let actions = machine.recoveryReply(
            .channelClose(replyCode: 406, replyText: "PRECONDITION_FAILED", classID: 60, methodID: 10), on: 1, at: Self.at(102))
        #expect(actions?.first == .sendChannelCloseOk(1))
        #expect(actions?.last == .recovered(attempt: 1), "confirm.select on the abandoned channel is skipped")
    }

    @Test("a consumer whose queue is gone ends; its channel reopens with prefetch and confirm mode for the consumers after it")
    func consumerRefused() {
        let channel = RecoveryPlan.Channel(
            id: 1, prefetch: [.init(count: 3, global: false)], confirmMode: true, consumerTags: ["gone", "alive"])
        var (machine, _) = Self.restoring(RecoveryPlan(channels: [channel]))
        for reply in [AMQPMethodID.channelOpenOk, .basicQosOk, .confirmSelectOk] {
            _ = machine.recoveryReply(.ok(reply), on: 1, at: Self.at(102))
        }
        #expect(machine.recovery?.step == .consume(channel: 1, consumerTag: "gone"))
        let actions = machine.recoveryReply(
            .channelClose(replyCode: 404, replyText: "NOT_FOUND - no queue 'q'", classID: 60, methodID: 20), on: 1,
            at: Self.at(102))
        #expect(
            actions == [
                .sendChannelCloseOk(1), .abandonConsumer(channel: 1, consumerTag: "gone", Self.queueGone), .send(.openChannel(1)),
            ])
        var sent: [RecoveryStep] = []
        for reply in [AMQPMethodID.channelOpenOk, .basicQosOk, .confirmSelectOk] {
            if case .send(let step)? = machine.recoveryReply(.ok(reply), on: 1, at: Self.at(102))?.last { sent.append(step) }
        }
        #expect(
            sent == [
                .setPrefetch(channel: 1, .init(count: 3, global: false)), .selectConfirms(channel: 1),
                .consume(channel: 1, consumerTag: "alive"),
            ])
    }

    static let replicaNotReady = ServerMethod.channelClose(
        replyCode: 406, replyText: "PRECONDITION_FAILED - stream queue 's' in vhost '/' does not have a replica on the local node",
        classID: 60, methodID: 20)

    @Test("a stream replica that is not ready yet fails the attempt, so the next one retries the consumer, for 3 attempts")
    func replicaNotReadyRetries() {
        var (machine, _) = Self.restoring(RecoveryPlan(channels: [.init(id: 1, consumerTags: ["s"])]))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        let actions = machine.recoveryReply(Self.replicaNotReady, on: 1, at: Self.at(102)) ?? []
        #expect(actions.first == .sendChannelCloseOk(1))
        #expect(actions.contains { if case .attemptFailed(1, _) = $0 { true } else { false } })
        #expect(machine.recovery?.attempt == 2)
    }

    @Test("on attempt 3 a replica that is still not ready ends that consumer instead")
    func replicaNotReadyGivesUp() {
        var machine = Self.lostMachine()
        var now = Self.at(101)
        for _ in 1...2 {
            _ = machine.tick(at: now)
            _ = machine.attemptFailed(Self.socketError, at: now)
            if case .waiting(let until) = machine.recovery?.phase { now = until }
        }
        _ = machine.tick(at: now)
        #expect(machine.recovery?.attempt == 3)
        _ = machine.connected(at: now, plan: RecoveryPlan(channels: [.init(id: 1, consumerTags: ["s"])]))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: now)
        let actions = machine.recoveryReply(Self.replicaNotReady, on: 1, at: now) ?? []
        #expect(actions.contains { if case .abandonConsumer(1, "s", _) = $0 { true } else { false } })
    }

    static let topologyPlan = RecoveryPlan(
        channels: [.init(id: 1, consumerTags: ["c"])], topologyChannel: 2,
        declarations: [
            .init(kind: .exchange, index: 0, reply: .exchangeDeclareOk, description: "exchange \"orders\""),
            .init(kind: .queue, index: 0, reply: .queueDeclareOk, description: "queue \"amq.gen-old\"", queueName: "amq.gen-old"),
            .init(kind: .binding, index: 0, reply: .queueBindOk, description: "binding"),
        ])

    @Test("the topology is declared on a channel of its own, after the channels and before the consumers, then closed")
    func topologyOrder() {
        var (machine, actions) = Self.restoring(Self.topologyPlan)
        var sent: [RecoveryStep] = []
        while case .send(let step)? = actions.last {
            sent.append(step)
            #expect(machine.topologyChannel == (step.isOnApplicationChannel ? nil : 2))
            let reply: ServerMethod =
                step.reply == .queueDeclareOk
                ? .queueDeclareOk(AMQPQueueInfo(name: "amq.gen-old", messageCount: 0, consumerCount: 0)) : .ok(step.reply!)
            actions = machine.recoveryReply(reply, on: step.channel, at: Self.at(102)) ?? []
        }
        #expect(sent.map(\.channel) == [1, 2, 2, 2, 2, 2, 1])
        #expect(sent[1] == .openTopologyChannel(2))
        #expect(sent[5] == .closeTopologyChannel(2))
        #expect(actions == [.recovered(attempt: 1)])
    }

    @Test("a server-named queue declared again under a new name renames it before its binding and consumer go out")
    func serverNamedQueueRenamed() {
        var (machine, _) = Self.restoring(Self.topologyPlan)
        for reply in [ServerMethod.ok(.channelOpenOk)] { _ = machine.recoveryReply(reply, on: 1, at: Self.at(102)) }
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 2, at: Self.at(102))
        _ = machine.recoveryReply(.ok(.exchangeDeclareOk), on: 2, at: Self.at(102))
        let actions = machine.recoveryReply(
            .queueDeclareOk(AMQPQueueInfo(name: "amq.gen-new", messageCount: 0, consumerCount: 0)), on: 2, at: Self.at(102))
        #expect(actions?.first == .renameQueue(from: "amq.gen-old", to: "amq.gen-new"))
        #expect(actions?.last.map { if case .send(.declare(let declaration, _)) = $0 { declaration.kind == .binding } else { false } } == true)
    }

    @Test("a refused declaration is logged and skipped; the topology channel reopens for the next")
    func declarationRefused() {
        var (machine, _) = Self.restoring(Self.topologyPlan)
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 2, at: Self.at(102))
        let actions = machine.recoveryReply(
            .channelClose(replyCode: 406, replyText: "PRECONDITION_FAILED - inequivalent arg 'type'", classID: 40, methodID: 10), on: 2,
            at: Self.at(102)) ?? []
        #expect(actions.count == 3)
        #expect(actions[0] == .sendChannelCloseOk(2))
        #expect(actions[1].isDeclarationRefused)
        #expect(actions[2] == .send(.openTopologyChannel(2)))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 2, at: Self.at(102))
        #expect(machine.recovery?.step.map { if case .declare(let d, _) = $0 { d.kind == .queue } else { false } } == true)
    }

    @Test("the topology channel cannot be opened: the attempt fails")
    func topologyChannelRefused() {
        var (machine, _) = Self.restoring(Self.topologyPlan)
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        let actions = machine.recoveryReply(
            .channelClose(replyCode: 504, replyText: "CHANNEL_ERROR", classID: 20, methodID: 10), on: 2, at: Self.at(102)) ?? []
        #expect(actions.contains { if case .attemptFailed(1, _) = $0 { true } else { false } })
    }

    @Test("republishing waits for no reply: the step is done once written, and recovery ends after the last")
    func republish() {
        var (machine, actions) = Self.restoring(RecoveryPlan(channels: [.init(id: 1, confirmMode: true, republishes: true)]))
        #expect(actions == [.send(.openChannel(1))])
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        actions = machine.recoveryReply(.ok(.confirmSelectOk), on: 1, at: Self.at(102)) ?? []
        #expect(actions == [.send(.republish(channel: 1))])
        #expect(machine.stepDone(.openChannel(1), at: Self.at(102)).isEmpty, "only the awaited step can be done")
        #expect(machine.stepDone(.republish(channel: 1), at: Self.at(102)) == [.recovered(attempt: 1)])
    }

    @Test("a step with nothing left to send (its consumer stopped meanwhile) is done at once")
    func skippedStep() {
        var (machine, _) = Self.restoring(RecoveryPlan(channels: [.init(id: 1, consumerTags: ["stopped", "c"])]))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        #expect(
            machine.stepDone(.consume(channel: 1, consumerTag: "stopped"), at: Self.at(102)) == [
                .send(.consume(channel: 1, consumerTag: "c"))
            ])
    }

    @Test("a channel the broker closes during restoring loses its later steps")
    func channelReleasedDuringRestore() {
        var (machine, _) = Self.restoring(
            RecoveryPlan(channels: [.init(id: 1, consumerTags: ["a"]), .init(id: 2, consumerTags: ["b"])]))
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102))
        machine.channelReleased(1)
        _ = machine.recoveryReply(.ok(.channelOpenOk), on: 2, at: Self.at(102))
        #expect(machine.recovery?.step == .consume(channel: 2, consumerTag: "b"))
    }

    @Test("an empty plan recovers as soon as the connection is back")
    func emptyPlan() {
        let (machine, actions) = Self.restoring(RecoveryPlan(channels: []))
        #expect(actions == [.recovered(attempt: 1)])
        #expect(machine.isOpen)
    }

    /// Every step of a full plan, interrupted by a socket failure while it waits.
    @Test(
        "a socket failure at any recovery step fails that attempt, and the next attempt starts the plan again",
        arguments: 0..<9)
    func socketFailureAtEveryStep(failingAt index: Int) {
        let plan = RecoveryPlan(
            channels: [.init(id: 1, prefetch: [.init(count: 5, global: false)], confirmMode: true, consumerTags: ["c"], republishes: true)],
            topologyChannel: 2,
            declarations: [
                .init(kind: .exchange, index: 0, reply: .exchangeDeclareOk, description: "exchange"),
                .init(kind: .queue, index: 0, reply: .queueDeclareOk, description: "queue", queueName: "q"),
            ])
        #expect(plan.steps.count == 9)
        var (machine, actions) = Self.restoring(plan)
        for _ in 0..<index {
            guard case .send(let step)? = actions.last else { break }
            if let reply = step.reply {
                let method: ServerMethod =
                    reply == .queueDeclareOk ? .queueDeclareOk(AMQPQueueInfo(name: "q", messageCount: 0, consumerCount: 0)) : .ok(reply)
                actions = machine.recoveryReply(method, on: step.channel, at: Self.at(102)) ?? []
            } else {
                actions = machine.stepDone(step, at: Self.at(102))
            }
        }
        #expect(machine.recovery?.step == plan.steps[index])
        #expect(machine.lost(Self.socketError, at: Self.at(103)) == [.attemptFailed(attempt: 1, Self.socketError)])
        #expect(machine.recovery?.phase == .waiting(until: Self.at(105)))
        #expect(machine.recovery?.step == nil)
        // A late reply from the failed attempt's connection is not taken for the next one's.
        #expect(machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(103)) == nil)
        _ = machine.tick(at: Self.at(105))
        #expect(machine.connected(at: Self.at(105), plan: plan) == [.send(plan.steps[0])])
    }

    @Test("the broker closes the new connection during restoring: close-ok, and the attempt fails")
    func brokerClosesDuringRestore() {
        var (machine, _) = Self.restoring(Self.onePlainChannel)
        let actions = machine.brokerClosed(replyCode: 320, replyText: "CONNECTION_FORCED", at: Self.at(102))
        #expect(actions.first == .sendConnectionCloseOk)
        guard case .attemptFailed(1, let error) = actions.last else {
            Issue.record("expected attempt 1 to fail, got \(actions)")
            return
        }
        #expect(error.message.contains("during recovery"))
        #expect(error.replyCode == 320)
    }

    @Test("a connect that fails is a failed attempt")
    func connectFails() {
        var machine = Self.lostMachine()
        _ = machine.tick(at: Self.at(101))
        let refused = AMQPError(code: .connectionFailed, message: "connection refused")
        #expect(machine.attemptFailed(refused, at: Self.at(101.2)) == [.attemptFailed(attempt: 1, refused)])
        #expect(machine.recovery?.lastError == refused)
        #expect(machine.recovery?.cause == Self.socketError, "the cause stays the first loss")
    }

    @Test("connected is ignored unless an attempt is connecting")
    func connectedOutOfTurn() {
        var machine = Self.lostMachine()
        #expect(machine.connected(at: Self.at(100.5), plan: Self.onePlainChannel).isEmpty)
        var open = Self.machine()
        #expect(open.connected(at: Self.at(1), plan: Self.onePlainChannel).isEmpty)
        #expect(open.attemptFailed(Self.socketError, at: Self.at(1)).isEmpty)
    }

    @Test("close requested while restoring closes the new connection politely")
    func closeWhileRestoring() {
        var (machine, _) = Self.restoring(Self.onePlainChannel)
        #expect(machine.closeRequested(at: Self.at(102)) == [.sendConnectionClose])
        #expect(machine.isClosing)
        #expect(machine.recoveryReply(.ok(.channelOpenOk), on: 1, at: Self.at(102)) == nil)
    }

    @Test("the next deadline: the close's, the backoff's end, the attempt's")
    func nextDeadline() {
        var machine = Self.machine()
        #expect(machine.nextDeadline == nil)
        _ = machine.lost(Self.socketError, at: Self.at(100))
        #expect(machine.nextDeadline == Self.at(101))
        _ = machine.tick(at: Self.at(101))
        #expect(machine.nextDeadline == Self.at(106))
    }
}

extension ConnectionStateMachine.Action {
    var isDeclarationRefused: Bool {
        if case .declarationRefused = self { return true }
        return false
    }
}
