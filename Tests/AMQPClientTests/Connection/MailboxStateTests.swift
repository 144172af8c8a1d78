import DequeModule
import Testing

@testable import AMQPClient

@Suite("Connection: the mailbox's routes for publishes and commands")
struct MailboxStateTests {
    static let channel = ChannelRef(id: 1, epoch: 1)
    static let limit = 4 << 20

    static func request(size: Int = 16, confirm: Bool = false) -> PublishRequest {
        PublishRequest(
            exchange: "", routingKey: "q", mandatory: false, properties: AMQPProperties(),
            body: [UInt8](repeating: 0, count: size), confirm: confirm ? ConfirmTracker() : nil)
    }

    /// A mailbox whose I/O thread sleeps on an open connection, long after the last publish.
    static func idleOpenMailbox() -> MailboxState {
        var state = MailboxState()
        state.connectionOpened(transport: .plain(socket: 42), frameMax: 131_072)
        let decision1 = state.prepareToSleep(settlementsMayWait: false)
        #expect(decision1)
        return state
    }

    static var later: ContinuousClock.Instant { .now + .seconds(1) }

    @Test("a sporadic small publish goes straight to the socket while the I/O thread sleeps")
    func directPublish() throws {
        var state = Self.idleOpenMailbox()
        let action = try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(action == .writeDirectly(.plain(socket: 42), frameMax: 131_072))
        // While it writes, the I/O thread waits for it rather than touch the socket.
        let decision2 = state.ioThreadWoke()
        #expect(decision2 == .waitForDirectPublish)
        let decision3 = state.directPublishEnded(leftRemainder: true)
        #expect(decision3 == .wakeIOThread)
        let decision4 = state.ioThreadWoke()
        #expect(decision4 == .awake(flushRemainder: true))
        let decision5 = state.ioThreadWoke()
        #expect(decision5 == .awake(flushRemainder: false))
    }

    @Test("a publish goes through the I/O thread when it needs a confirm, is large, or follows another closely")
    func queuedPublishes() throws {
        var state = Self.idleOpenMailbox()
        let confirmed = try state.routePublish(Self.channel, Self.request(confirm: true), at: Self.later, bufferLimit: Self.limit)
        #expect(confirmed == .queued(.wakeIOThread, waitForRoom: false))
        // The thread was woken once; the next publish need not wake it again.
        let close = try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(close == .queued(.none, waitForRoom: false))
        #expect(state.commands.count == 2)

        var large = Self.idleOpenMailbox()
        let big = try large.routePublish(Self.channel, Self.request(size: 64 * 1024), at: Self.later, bufferLimit: Self.limit)
        #expect(big == .queued(.wakeIOThread, waitForRoom: false))
    }

    @Test("a publish without a tracker on a channel that asked for confirms goes through the I/O thread")
    func confirmSelectInFlight() throws {
        var state = Self.idleOpenMailbox()
        var asked = false
        let action = try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit) {
            asked = true
            return false
        }
        #expect(asked)
        #expect(action == .queued(.wakeIOThread, waitForRoom: false))
    }

    @Test("while recovering or blocked, publishes wait in the mailbox instead of going to the socket")
    func recoveringAndBlocked() throws {
        var recovering = Self.idleOpenMailbox()
        recovering.recovering = true
        let whileRecovering = try recovering.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(whileRecovering == .queued(.wakeIOThread, waitForRoom: false))
        #expect(recovering.commands.count == 1)

        var blocked = Self.idleOpenMailbox()
        blocked.setBlocked("low on memory")
        let whileBlocked = try blocked.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(whileBlocked == .queued(.wakeIOThread, waitForRoom: false))
    }

    @Test("past the buffer limit a publisher waits, and is resumed once the I/O thread takes the commands")
    func bufferLimit() throws {
        var state = MailboxState()
        let action = try state.routePublish(Self.channel, Self.request(size: 1000), at: Self.later, bufferLimit: 500)
        #expect(action == .queued(.none, waitForRoom: true))
        let publisher = MailboxState.PublishWaiter()
        guard case .wait = state.waitForRoom(publisher, bufferLimit: 500) else {
            Issue.record("a publisher over the limit must wait")
            return
        }
        var batch: Deque<Command> = []
        let resumed = state.takeCommands(into: &batch, bufferLimit: 500)
        #expect(resumed.count == 1 && resumed.first === publisher)
        #expect(batch.count == 1)
        #expect(state.queuedPublishBytes == 0)
        // Held publishes of a blocked connection still count: the next publisher waits until
        // the I/O thread releases them.
        let stillResumed = state.setHeldPublishBytes(1256, bufferLimit: 500)
        #expect(stillResumed.isEmpty)
        #expect(state.heldPublishBytes == 1256)
        let second = MailboxState.PublishWaiter()
        guard case .wait = state.waitForRoom(second, bufferLimit: 500) else {
            Issue.record("held publishes over the limit must make a publisher wait")
            return
        }
        #expect(state.setHeldPublishBytes(400, bufferLimit: 500).first === second)
    }

    @Test("a settlement need not wake an I/O thread that wakes by itself within a millisecond")
    func settlementsWait() throws {
        var state = MailboxState()
        let decision7 = state.prepareToSleep(settlementsMayWait: true)
        #expect(decision7)
        let settle = Command.settle(Self.channel, generation: 0, .basicAck(deliveryTag: 1, multiple: false))
        let decision8 = try state.submit(settle)
        #expect(decision8 == .none)
        let decision9 = try state.submit(.closeConnection)
        #expect(decision9 == .wakeIOThread)
        // Work is waiting: the thread must not go to sleep.
        let decision10 = state.prepareToSleep(settlementsMayWait: false)
        #expect(!decision10)
    }

    @Test("after close() commands are refused; the end hands back what still waited")
    func closeAndFinish() throws {
        var state = Self.idleOpenMailbox()
        let decision11 = state.beginClose()
        #expect(decision11 == .wakeIOThread)
        let decision12 = state.beginClose()
        #expect(decision12 == nil)
        #expect(throws: AMQPError.self) { try state.submit(.closeConnection) }
        #expect(throws: AMQPError.self) {
            try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        }
        let leftovers = state.finish(error: .connectionClosedByApplication, byApplication: true)
        #expect(leftovers.commands.count == 1)  // the close itself
        #expect(state.final?.byApplication == true)
    }
}
