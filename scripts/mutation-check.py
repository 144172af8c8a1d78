#!/usr/bin/env python3
"""Applies named mutations to the client's state machines and value types, one at a time, and
checks that the broker-free tests (`swift test --filter AMQPClientTests`) catch each one: a test
suite that still passes with a dropped transition, a skipped resume or an off-by-one is not
testing that line. Prints a table; exits non-zero if any mutation survives, or if one no longer
applies (the code it names changed: update the list).

    scripts/mutation-check.py [NAME_SUBSTRING ...]

Standard library only. Every file is restored after each mutation, also on failure or Ctrl-C.
"""
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ROOT / "Sources" / "AMQPClient"

# (name, file under Sources/AMQPClient, text to find (exactly once), replacement)
MUTATIONS = [
    # ChannelStateMachine: how a channel closes
    ("channel: the application's close sends no channel.close", "Channel/ChannelStateMachine.swift",
     "return [.markClosed(.channelClosedByApplication(id)), .sendClose]", "return [.markClosed(.channelClosedByApplication(id))]"),
    ("channel: the broker's close is not answered", "Channel/ChannelStateMachine.swift",
     "let answer: [Action] = answered ? [] : [.sendCloseOk]", "let answer: [Action] = []"),
    ("channel: close-ok does not release the number", "Channel/ChannelStateMachine.swift",
     "state = .released\n            return [.release, .finish(consumers: nil, pending: nil)]\n        case .open:",
     "return [.finish(consumers: nil, pending: nil)]\n        case .open:"),
    ("channel: the close deadline fires a moment late (off by one)", "Channel/ChannelStateMachine.swift",
     "now >= deadline else { return [] }", "now > deadline else { return [] }"),
    ("channel: a lost connection keeps a closing channel", "Channel/ChannelStateMachine.swift",
     "guard isClosing else { return [] }", "guard isOpen else { return [] }"),
    ("channel: a broker close crossing ours releases before our close-ok", "Channel/ChannelStateMachine.swift",
     "            // Both sides closed at once: each answers the other's close; ours is answered by the\n            // broker's close-ok, which still comes.\n            return answer",
     "            state = .released\n            return answer + [.release]"),
    ("channel: an unsolicited close-ok is taken as ours", "Channel/ChannelStateMachine.swift",
     "            return [.protocolViolation(.unexpectedFrame(\"channel.close-ok on channel \\(id), which the client did not close\"))]",
     "            state = .released\n            return [.release]"),
    ("channel: a reply that overtakes our close is handled as if open", "Channel/ChannelStateMachine.swift",
     "        default:\n            return []\n        }\n    }\n\n    /// Time passed.", "        default:\n            return nil\n        }\n    }\n\n    /// Time passed."),
    # ChannelIO+Inbound: what a channel does with what the broker sends
    ("inbound: the broker's cancel is not answered", "Channel/ChannelIO+Inbound.swift",
     "return noWait ? .handled : .send(.basicCancelOk(consumerTag: consumerTag))", "return .handled"),
    ("inbound: an unsolicited cancel-ok ends the consumer", "Channel/ChannelIO+Inbound.swift",
     "guard pendingReplies.oldest(answeredBy: .basicCancelOk) != nil else { return unsolicited(method) }", ""),
    ("inbound: a reply to nothing is ignored", "Channel/ChannelIO+Inbound.swift",
     "if method.replyID != nil && method.replyID != .channelFlow { return unsolicited(method) }", ""),
    ("inbound: a late delivery after a cancel is dropped, not given back", "Channel/ChannelIO+Inbound.swift",
     "guard wasCancelledWithManualAck(consumerTag), !connectionClosing else", "guard false, !connectionClosing else"),
    ("inbound: a delivery the iterator refused is not given back", "Channel/ChannelIO+Inbound.swift",
     "if result == .refused && !stream.noAck && !connectionClosing {", "if false {"),
    ("inbound: a manual-ack delivery is not tracked for settling", "Channel/ChannelIO+Inbound.swift",
     "if !stream.noAck { settlements.delivered(deliveryTag) }", ""),
    # ConnectionStateMachine: open, close, loss, and recovery
    ("connection: a loss with recovery enabled ends the connection", "Connection/ConnectionStateMachine.swift",
     "guard configuration.recovery.isEnabled else {", "guard false else {"),
    ("connection: the broker's close is not answered", "Connection/ConnectionStateMachine.swift",
     "return [.sendConnectionCloseOk] + lost(error, at: now)", "return lost(error, at: now)"),
    ("connection: deadlines fire a moment late (off by one)", "Connection/ConnectionStateMachine.swift",
     "guard let deadline = nextDeadline, now >= deadline else { return [] }",
     "guard let deadline = nextDeadline, now > deadline else { return [] }"),
    ("connection: the backoff's end is a lost timer", "Connection/ConnectionStateMachine.swift",
     "case .waiting(let until): until", "case .waiting: nil"),
    ("connection: a loss soon after recovering starts the backoff afresh", "Connection/ConnectionStateMachine.swift",
     "attemptsSoFar = lastConnected.attempts", "attemptsSoFar = 0"),
    ("connection: gives up one attempt late (off by one)", "Connection/ConnectionStateMachine.swift",
     "recovery.attempt > maximum {", "recovery.attempt > maximum + 1 {"),
    ("connection: close while backing off waits for the next attempt", "Connection/ConnectionStateMachine.swift",
     "            state = .closed\n            return [.tearDown(.connectionClosedByApplication, byApplication: true)]\n        case .connecting, .closing, .closed:",
     "            return []\n        case .connecting, .closing, .closed:"),
    ("recovery: an attempt past its deadline goes on", "Connection/ConnectionStateMachine.swift",
     "            case .connecting, .restoring:\n                let error = AMQPError(",
     "            case .connecting, .restoring:\n                return []\n                let error = AMQPError("),
    ("recovery: a reply on another channel is taken for the step's", "Connection/ConnectionStateMachine.swift",
     "            channel == step.channel\n        else { return nil }", "            true\n        else { return nil }"),
    ("recovery: a refused channel keeps its later steps", "Connection/ConnectionStateMachine.swift",
     "                remaining.removeAll { $0.isOnApplicationChannel && $0.channel == channel }\n            case .openTopologyChannel:",
     "            case .openTopologyChannel:"),
    ("recovery: a refused declaration leaves the topology channel closed", "Connection/ConnectionStateMachine.swift",
     "remaining.insert(.openTopologyChannel(topologyChannel), at: 0)", ""),
    ("recovery: a refused consumer's channel is not reopened", "Connection/ConnectionStateMachine.swift",
     "remaining.insert(contentsOf: reopening ?? [.openChannel(channel)], at: 0)", ""),
    ("recovery: a replica that is not ready is retried forever", "Connection/ConnectionStateMachine.swift",
     "recovery.attempt < Self.replicaRetryAttempts", "true"),
    ("recovery: a server-named queue is not renamed", "Connection/ConnectionStateMachine.swift",
     "let oldName = declaration.queueName, info.name != oldName", "let oldName = declaration.queueName, false, info.name != oldName"),
    ("recovery: consumers are restored before the topology", "Recovery/RecoveryPlan.swift",
     "for channel in channels { steps += RecoveryStep.reopening(channel) }",
     "for channel in channels { steps += RecoveryStep.reopening(channel) + channel.consumerTags.map { .consume(channel: channel.id, consumerTag: $0) } }"),
    ("recovery: the channel's prefetch is restored before the consumers'", "Recovery/RecoveryPlan.swift",
     "self.prefetch = prefetch.sorted { !$0.global && $1.global }", "self.prefetch = prefetch"),
    # InboundFrameScanner and FieldTableScanner: the frame check
    ("scanner: a second property-flag word is accepted", "Protocol/InboundFrameScanner.swift",
     "guard flags & 0x0001 == 0 else {", "guard flags & 0x0001 == 0 || true else {"),
    ("scanner: frames before a refused one are not handed on", "Protocol/InboundFrameScanner.swift",
     "if gathered.isEmpty { frameStart = offset }", "if gathered.isEmpty { frameStart = 0 }"),
    ("scanner: tables one level deeper than the limit (off by one)", "Protocol/FieldTableScanner.swift",
     "guard open.count < maximumDepth else { return .tooDeep }", "guard open.count <= maximumDepth else { return .tooDeep }"),
    ("scanner: one value fewer than the limit (off by one)", "Protocol/FieldTableScanner.swift",
     "guard entries <= maximumEntries else { return .tooManyEntries }", "guard entries < maximumEntries else { return .tooManyEntries }"),
    ("scanner: a content header of another class passes", "Protocol/InboundFrameScanner.swift",
     "guard classID == 60 else {", "guard classID == 60 || true else {"),
    ("scanner: a heartbeat on a channel passes", "Protocol/InboundFrameScanner.swift",
     "if channel != 0 { return .channelError(\"a heartbeat on channel \\(channel)\") }", ""),
    ("scanner: a frame on an unopened channel passes", "Protocol/InboundFrameScanner.swift",
     "if channel != 0 && !isOpen(channel) {", "if channel != 0 && !isOpen(channel) && false {"),
    ("scanner: the properties' short strings are not walked", "Protocol/InboundFrameScanner.swift",
     "offset += 1 + Int(payload[offset])\n            case .table:", "break\n            case .table:"),
    # CDecoding: the second wall
    ("conversion: one level deeper than the limit (off by one)", "LibRabbitMQ/CDecoding.swift",
     "guard depth <= maximumDepth else {", "guard depth <= maximumDepth + 1 else {"),
    # Settlements: ack merging
    ("acks: a held ack is not merged with a later one", "Channel/Settlements.swift",
     "defer { heldAck = max(heldAck ?? 0, tag) }", "defer { heldAck = heldAck ?? tag }"),
    ("acks: a nack overtakes the held ack", "Channel/Settlements.swift",
     "if let held = takeHeldAck() { return .sendHeldAckThen(held, method) }", ""),
    # PendingReplies: matching replies
    ("replies: a reply completes the newest request", "Channel/PendingReplies.swift",
     "waiting.firstIndex(where: { $0.replies.contains(id) })", "waiting.lastIndex(where: { $0.replies.contains(id) })"),
    # ConsumerStream: buffering and hand-over
    ("consumer: the buffer drains a delivery late (off by one)", "Consumer/ConsumerStream.swift",
     "guard overLimit, bufferedBytes <= limit / 2 else", "guard overLimit, bufferedBytes < limit / 2 else"),
    ("consumer: a push to a waiting iterator asks for no wake", "Consumer/ConsumerStream.swift",
     "let needsWake = state.waiter != nil && !state.wakeRequested", "let needsWake = false"),
    ("consumer: a finished stream still takes deliveries", "Consumer/ConsumerStream.swift",
     "if state.terminated || state.finished != nil { return .refused }", "if state.terminated { return .refused }"),
    # ConsumerFlowControl: reading paused while a buffer is full
    ("flow: reading goes on while a consumer is still full", "Consumer/ConsumerFlowControl.swift",
     "fullConsumers.removeAll { !$0.isOverLimit || $0.isFinished }", "fullConsumers.removeAll()"),
    ("flow: a consumer that ended holds reading up", "Consumer/ConsumerFlowControl.swift",
     "fullConsumers.removeAll { !$0.isOverLimit || $0.isFinished }", "fullConsumers.removeAll { !$0.isOverLimit }"),
    # MailboxState: publishers waiting for room
    ("mailbox: publishers waiting for room are never resumed", "Connection/MailboxState.swift",
     "defer { publishWaiters.removeAll() }\n        return publishWaiters", "defer { publishWaiters.removeAll() }\n        return []"),
    ("mailbox: a publish goes direct on a channel that asked for confirms", "Connection/MailboxState.swift",
     "&& blockedReason == nil && withoutConfirms(), let transport", "&& blockedReason == nil, let transport"),
    # Waiting and cancelling
    ("limiter: a cancelled waiter keeps the place passed to it", "Channel/UnconfirmedPublishLimiter.swift",
     "guard let next, !next.resume() else { return }", "guard let next else { return }\n            next.resume()\n            return"),
    ("confirms: an outcome gives its place back twice", "Channel/ConfirmTracker.swift",
     "guard state.outcome == nil else { return ([], nil) }", ""),
    ("continuation: a resume after cancellation claims to have delivered", "Utilities/CancellableContinuation.swift",
     "return waiting != nil\n", "return true\n"),
    ("confirmation: confirmed() returns without confirm mode", "Channel/AMQPPublishConfirmation.swift",
     "guard let tracker else {\n            throw", "guard let tracker else {\n            return\n            throw"),
    # ContentAssembly: a message's frames in order
    ("content: more body than announced is accepted", "Channel/ContentAssembly.swift",
     "guard fragment.count <= bodySize - received else {", "guard true else {"),
    ("content: a large body's buffer grows by doubling, past its size", "Channel/ContentAssembly.swift",
     "message!.body.reserveCapacity(needed >= bodySize / 4 ? bodySize : min(doubled, bodySize))",
     "_ = doubled"),
    ("inbound: a settlement from before a recovery goes out", "Channel/ChannelIO.swift",
     "        generation == self.generation\n", "        true\n"),
    # The rest
    ("recovery: the backoff does not double", "Configuration/AMQPConnection+Recovery.swift",
     "var delay = initialDelay * (1 << doublings)", "var delay = initialDelay * (1 << 0)"),
    ("logs: an escape character reaches the terminal", "Utilities/LogText.swift",
     "scalar.value < 0x20 ||", "scalar.value < 0x1B ||"),
    ("library: a librabbitmq too new to know is accepted", "LibRabbitMQ/LibraryVersion.swift",
     "LibraryVersion(0, 10)..<LibraryVersion(0, 17)", "LibraryVersion(0, 10)..<LibraryVersion(1, 0)"),
]


def run_tests():
    build = subprocess.run(["swift", "build", "--build-tests", "--traits", "SQLite"], cwd=ROOT, capture_output=True, text=True)
    if build.returncode != 0:
        return "does not build"
    test = subprocess.run(
        ["swift", "test", "--skip-build", "--traits", "SQLite", "--filter", "AMQPClientTests"], cwd=ROOT, capture_output=True, text=True,
        timeout=600)
    return "caught" if test.returncode != 0 else "SURVIVED"


def main():
    wanted = sys.argv[1:]
    chosen = [m for m in MUTATIONS if not wanted or any(w in m[0] for w in wanted)]
    print(f"mutation-check: {len(chosen)} mutations; baseline first", flush=True)
    if run_tests() != "SURVIVED":  # the unmutated tests must pass
        print("mutation-check: the broker-free tests fail without any mutation", file=sys.stderr)
        return 1
    results = []
    for name, relative, find, replace in chosen:
        path = SOURCES / relative
        original = path.read_text()
        if original.count(find) != 1:
            results.append((name, "NOT APPLIED (the code changed: update the mutation)", 0.0))
            continue
        started = time.monotonic()
        try:
            path.write_text(original.replace(find, replace))
            outcome = run_tests()
        finally:
            path.write_text(original)
        results.append((name, outcome, time.monotonic() - started))
        print(f"  {outcome:>16}  {name}", flush=True)
    subprocess.run(["swift", "build", "--build-tests", "--traits", "SQLite"], cwd=ROOT, capture_output=True)  # back to the real code
    print("\n| mutation | outcome |\n|---|---|")
    for name, outcome, _ in results:
        print(f"| {name} | {outcome} |")
    failed = [r for r in results if r[1] != "caught"]
    caught = sum(1 for r in results if r[1] == "caught")
    print(f"\nmutation-check: {caught} of {len(results)} caught; "
          f"{len(failed)} survived or not applied")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
