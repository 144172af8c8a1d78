import Testing

@testable import AMQPClient

@Suite("Channel: how a channel closes, as a state machine")
struct ChannelStateMachineTests {
    typealias Action = ChannelStateMachine.Action

    static let start = ContinuousClock.now
    static let deadline = start + .seconds(5)
    static let brokerError = AMQPError.channelClosedByBroker(
        channel: 7, replyCode: 404, replyText: "NOT_FOUND - no queue 'q'", classID: 50, methodID: 10)
    static let timeout = AMQPError.callTimedOut(channel: 7, after: .seconds(1))

    @Test("the application closes: the handle refuses calls, channel.close goes out, close-ok releases the number and resolves what waits")
    func applicationClose() {
        var machine = ChannelStateMachine(id: 7)
        #expect(machine.close(because: nil, deadline: Self.deadline) == [.markClosed(.channelClosedByApplication(7)), .sendClose])
        #expect(machine.isClosing && !machine.isOpen)
        #expect(machine.closeDeadline == Self.deadline)
        #expect(machine.closeOk() == [.release, .finish(consumers: nil, pending: nil)])
        #expect(machine.state == .released)
    }

    @Test("a call timed out: everything waiting fails with the timeout at once, and commands queued later fail with it too")
    func timeoutClose() {
        var machine = ChannelStateMachine(id: 7)
        #expect(
            machine.close(because: Self.timeout, deadline: Self.deadline) == [
                .markClosed(Self.timeout), .rememberReason(Self.timeout),
                .finish(consumers: Self.timeout, pending: Self.timeout), .sendClose,
            ])
    }

    @Test("closing twice sends one channel.close")
    func closeTwice() {
        var machine = ChannelStateMachine(id: 7)
        _ = machine.close(because: nil, deadline: Self.deadline)
        #expect(machine.close(because: Self.timeout, deadline: Self.deadline).isEmpty)
    }

    @Test("the broker closes an open channel: close-ok goes out first, the number is free, consumers and calls end with its reason")
    func brokerClose() {
        var machine = ChannelStateMachine(id: 7)
        #expect(
            machine.brokerClosed(Self.brokerError) == [
                .sendCloseOk, .release, .markClosed(Self.brokerError), .rememberReason(Self.brokerError),
                .finish(consumers: Self.brokerError, pending: Self.brokerError),
            ])
        #expect(machine.state == .released)
        // Nothing more happens to a released channel.
        #expect(machine.brokerClosed(Self.brokerError).isEmpty)
        #expect(machine.closeOk().isEmpty)
        #expect(machine.close(because: nil, deadline: Self.deadline).isEmpty)
    }

    @Test("a broker close crossing the client's close: each side answers the other, and the broker's close-ok ends it")
    func crossingCloses() {
        var machine = ChannelStateMachine(id: 7)
        _ = machine.close(because: nil, deadline: Self.deadline)
        #expect(machine.brokerClosed(Self.brokerError) == [.sendCloseOk])
        #expect(machine.isClosing)  // still waiting for the answer to ours
        #expect(machine.closeOk() == [.release, .finish(consumers: nil, pending: nil)])
    }

    @Test("a close-ok the client never asked for is a protocol error")
    func unsolicitedCloseOk() {
        var machine = ChannelStateMachine(id: 7)
        guard case .protocolViolation(let violation)? = machine.closeOk().first else {
            Issue.record("an unsolicited close-ok must be refused")
            return
        }
        #expect(violation.replyCode == 505)
        #expect(machine.isOpen)
    }

    @Test("a close the broker does not confirm in time fails what waits, keeps the number reserved, and a late close-ok still releases it")
    func closeDeadline() {
        var machine = ChannelStateMachine(id: 7)
        _ = machine.close(because: nil, deadline: Self.deadline)
        #expect(machine.deadlinePassed(at: Self.deadline - .milliseconds(1)).isEmpty)
        let actions = machine.deadlinePassed(at: Self.deadline)
        guard case .failPending(let error)? = actions.first, actions.count == 1 else {
            Issue.record("expected the pending requests to fail, got \(actions)")
            return
        }
        #expect(error.code == .channelClosed)
        #expect(machine.isClosing && machine.closeDeadline == nil)  // reserved, no deadline any more
        #expect(machine.deadlinePassed(at: Self.deadline + .seconds(60)).isEmpty)  // once
        #expect(machine.closeOk() == [.release, .finish(consumers: nil, pending: nil)])
    }

    @Test("a lost connection closes a channel the application was closing, and keeps an open one for the new connection")
    func connectionLost() {
        var closing = ChannelStateMachine(id: 7)
        _ = closing.close(because: nil, deadline: Self.deadline)
        #expect(closing.connectionLost() == [.release, .finish(consumers: nil, pending: nil)])
        var open = ChannelStateMachine(id: 8)
        #expect(open.connectionLost().isEmpty)
        #expect(open.isOpen)
    }

    @Test("closed between recovery attempts: released at once, without the broker")
    func closedWithoutBroker() {
        var machine = ChannelStateMachine(id: 7)
        #expect(
            machine.closedWithoutBroker() == [
                .release, .markClosed(.channelClosedByApplication(7)), .finish(consumers: nil, pending: nil),
            ])
        #expect(machine.closedWithoutBroker().isEmpty)
    }

    @Test("recovery could not reopen it: closed with the broker's reason, close-ok answered already")
    func refusedOnRecovery() {
        var machine = ChannelStateMachine(id: 7)
        #expect(machine.brokerClosed(Self.brokerError, answered: true).first == .release)
        #expect(!machine.brokerClosed(Self.brokerError, answered: true).contains(.sendCloseOk))
    }

    @Test("the connection ends: consumers end normally when the application closed it, with the error when it failed")
    func connectionEnded() {
        var closedByApplication = ChannelStateMachine(id: 7)
        #expect(
            closedByApplication.connectionEnded(.connectionClosedByApplication, byApplication: true) == [
                .markClosed(.connectionClosedByApplication),
                .finish(consumers: nil, pending: .connectionClosedByApplication), .release,
            ])
        let lost = AMQPError(code: .connectionLost, message: "gone")
        var failed = ChannelStateMachine(id: 7)
        #expect(failed.connectionEnded(lost, byApplication: false).contains(.finish(consumers: lost, pending: lost)))
        #expect(failed.connectionEnded(lost, byApplication: false).isEmpty)  // once
    }
}

@Suite("Channel: what arrives while the client closes it")
struct ChannelClosingRacesTests {
    static let deadline = ContinuousClock.now + .seconds(5)

    static func closing() -> ChannelStateMachine {
        var machine = ChannelStateMachine(id: 3)
        _ = machine.close(because: nil, deadline: Self.deadline)
        return machine
    }

    @Test("an open channel handles every method itself")
    func openHandlesItself() {
        var machine = ChannelStateMachine(id: 3)
        #expect(machine.receivedWhileClosing(.ok(.queueDeclareOk)) == nil)
        #expect(machine.receivedWhileClosing(.ok(.channelCloseOk)) == nil)
    }

    @Test("a reply that overtakes our channel.close is dropped; the channel waits on for close-ok")
    func replyOvertakesClose() {
        var machine = Self.closing()
        #expect(machine.receivedWhileClosing(.queueDeclareOk(AMQPQueueInfo(name: "q", messageCount: 0, consumerCount: 0))) == [])
        #expect(machine.receivedWhileClosing(.consumeOk(consumerTag: "c")) == [])
        #expect(machine.isClosing)
        #expect(machine.receivedWhileClosing(.ok(.channelCloseOk)) == [.release, .finish(consumers: nil, pending: nil)])
    }

    @Test("deliveries and confirms that arrive while closing are dropped (the broker requeues or resolves them with the close)")
    func deliveriesWhileClosing() {
        var machine = Self.closing()
        #expect(
            machine.receivedWhileClosing(.deliver(consumerTag: "c", deliveryTag: 9, redelivered: false, exchange: "", routingKey: "q"))
                == [])
        #expect(machine.receivedWhileClosing(.ack(deliveryTag: 4, multiple: true)) == [])
        #expect(machine.isClosing)
    }

    @Test("the broker's close crossing ours is answered with close-ok; our close-ok still ends it")
    func brokerCloseCrosses() {
        var machine = Self.closing()
        let actions = machine.receivedWhileClosing(
            .channelClose(replyCode: 406, replyText: "PRECONDITION_FAILED", classID: 60, methodID: 80))
        #expect(actions == [.sendCloseOk])
        #expect(machine.isClosing)
        #expect(machine.receivedWhileClosing(.ok(.channelCloseOk)) == [.release, .finish(consumers: nil, pending: nil)])
        #expect(machine.receivedWhileClosing(.ok(.channelCloseOk)) == nil, "released: a late duplicate is not the closing channel's")
    }

    @Test("a close that timed out still takes a late close-ok and releases the number")
    func lateCloseOk() {
        var machine = Self.closing()
        _ = machine.deadlinePassed(at: Self.deadline)
        #expect(machine.receivedWhileClosing(.ok(.channelCloseOk)) == [.release, .finish(consumers: nil, pending: nil)])
        #expect(machine.state == .released)
    }
}
