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

    static let claim = DirectWriteClaim(transport: .plain(socket: 42), frameMax: 131_072)
    static let ack = ClientMethod.basicAck(deliveryTag: 1, multiple: false)

    /// What a task leaves for the I/O thread after it acked directly.
    static let record = Command.settledDirectly(channel, generation: 0, ack)

    @Test("a sporadic small publish goes straight to the socket while the I/O thread sleeps")
    func directPublish() throws {
        var state = Self.idleOpenMailbox()
        let action = try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(action == .writeDirectly(Self.claim))
        // While it writes, the I/O thread waits for it rather than touch the socket.
        let decision2 = state.ioThreadWoke()
        #expect(decision2 == .waitForDirectWrite)
        let decision3 = state.directWriteEnded(nil, leftRemainder: true)
        #expect(decision3 == .wakeIOThread)
        let decision4 = state.ioThreadWoke()
        #expect(decision4 == .awake(flushRemainder: true))
        let decision5 = state.ioThreadWoke()
        #expect(decision5 == .awake(flushRemainder: false))
        #expect(state.commands.isEmpty)
    }

    @Test("a publish on a channel that asked for confirms goes through the I/O thread, which numbers them")
    func confirmModeQueues() throws {
        var confirmed = Self.idleOpenMailbox()
        let tracked = try confirmed.routePublish(Self.channel, Self.request(confirm: true), at: Self.later, bufferLimit: Self.limit)
        #expect(tracked == .queued(.wakeIOThread, waitForRoom: false))
        // No tracker yet, but confirm.select is on its way: the I/O thread must count it.
        var selecting = Self.idleOpenMailbox()
        var asked = false
        let untracked = try selecting.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit) {
            asked = true
            return false
        }
        #expect(asked)
        #expect(untracked == .queued(.wakeIOThread, waitForRoom: false))
    }

    @Test("direct acks follow one another without waking the I/O thread, until records pile up")
    func recordsDoNotWake() throws {
        var state = Self.idleOpenMailbox()
        for written in 1...MailboxState.recordsBeforeWake {
            let action = try state.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
            #expect(action == .writeDirectly(Self.claim))
            let wake = state.directWriteEnded(Self.record, leftRemainder: false)
            // The last one wakes the thread, so that records cannot pile up without bound.
            #expect(wake == (written == MailboxState.recordsBeforeWake ? .wakeIOThread : .none))
        }
        #expect(state.commands.count == MailboxState.recordsBeforeWake)
        // A write that failed to encode leaves no record.
        var failed = Self.idleOpenMailbox()
        _ = try failed.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
        let outcome1 = failed.directWriteEnded(nil, leftRemainder: false)
        #expect(outcome1 == .none)
        #expect(failed.commands.isEmpty)
    }

    @Test("no direct write may pass a command the I/O thread has yet to write")
    func directWritesKeepOrder() throws {
        var state = Self.idleOpenMailbox()
        _ = try state.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
        _ = state.directWriteEnded(Self.record, leftRemainder: false)
        // A call is queued (and wakes the thread); the publish and ack after it must queue too.
        let wake = try state.submit(.closeConnection)
        #expect(wake == .wakeIOThread)
        let outcome2 = state.prepareToSleep(settlementsMayWait: false)
        #expect(outcome2 == false)
        let publish = try state.routePublish(Self.channel, Self.request(), at: Self.later + .seconds(1), bufferLimit: Self.limit)
        #expect(publish == .queued(.none, waitForRoom: false))
        let settle = try state.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
        #expect(settle == .queued(.none))
        // Once the I/O thread took them and sleeps again, the socket is free.
        var batch: Deque<Command> = []
        _ = state.takeCommands(into: &batch, bufferLimit: Self.limit)
        #expect(batch.count == 4)
        let outcome3 = state.prepareToSleep(settlementsMayWait: false)
        #expect(outcome3)
        let direct = try state.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
        #expect(direct == .writeDirectly(Self.claim))

        // An ack left for a thread that wakes by itself within a millisecond is not written
        // yet either: a publish must not overtake it.
        var merging = MailboxState()
        merging.connectionOpened(transport: .plain(socket: 42), frameMax: 131_072)
        let sleeps = merging.prepareToSleep(settlementsMayWait: true)
        #expect(sleeps)
        let held = try merging.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
        #expect(held == .queued(.none))
        let after = try merging.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(after == .queued(.wakeIOThread, waitForRoom: false))
    }

    @Test("an ack goes straight to the socket while the I/O thread sleeps and the channel accepts it")
    func directSettlement() throws {
        var state = Self.idleOpenMailbox()
        let direct = try state.routeSettlement(Self.channel, generation: 3, Self.ack) { true }
        #expect(direct == .writeDirectly(Self.claim))
        // Only one task writes at a time: another ack meanwhile goes through the I/O thread.
        let meanwhile = try state.routeSettlement(Self.channel, generation: 3, Self.ack) { true }
        #expect(meanwhile == .queued(.wakeIOThread))
        _ = state.directWriteEnded(Self.record, leftRemainder: false)
        #expect(state.commands.count == 2)

        // A delivery from before a recovery, or a channel that closed: the I/O thread decides.
        var stale = Self.idleOpenMailbox()
        var asked = false
        let refused = try stale.routeSettlement(Self.channel, generation: 3, Self.ack) {
            asked = true
            return false
        }
        #expect(asked)
        #expect(refused == .queued(.wakeIOThread))
    }

    @Test("acks of a large prefetch wait for the I/O thread's short sleep instead, to be merged")
    func settlementsMerge() throws {
        var state = MailboxState()
        state.connectionOpened(transport: .plain(socket: 42), frameMax: 131_072)
        let outcome4 = state.prepareToSleep(settlementsMayWait: true)
        #expect(outcome4)
        let first = try state.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
        #expect(first == .queued(.none))
        // Without a connection there is no socket to write to either.
        var closed = MailboxState()
        let outcome5 = closed.prepareToSleep(settlementsMayWait: false)
        #expect(outcome5)
        let noSocket = try closed.routeSettlement(Self.channel, generation: 0, Self.ack) { true }
        #expect(noSocket == .queued(.wakeIOThread))
    }

    @Test("a publish goes through the I/O thread when it is large or follows another closely")
    func queuedPublishes() throws {
        var state = Self.idleOpenMailbox()
        let first = try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(first == .writeDirectly(Self.claim))
        _ = state.directWriteEnded(nil, leftRemainder: false)
        let close = try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(close == .queued(.wakeIOThread, waitForRoom: false))
        // The thread was woken once; the next publish need not wake it again.
        let closer = try state.routePublish(Self.channel, Self.request(), at: Self.later, bufferLimit: Self.limit)
        #expect(closer == .queued(.none, waitForRoom: false))
        #expect(state.commands.count == 2)

        var large = Self.idleOpenMailbox()
        let big = try large.routePublish(Self.channel, Self.request(size: 64 * 1024), at: Self.later, bufferLimit: Self.limit)
        #expect(big == .queued(.wakeIOThread, waitForRoom: false))
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
