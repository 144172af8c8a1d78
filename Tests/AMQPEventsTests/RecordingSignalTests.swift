import Testing

@testable import AMQPEventsTesting

@Suite("AMQPEventsTesting: the signal that wakes the harness's waits")
struct RecordingSignalTests {
    // The limits are a minute: a wait that returns well before it was woken, not timed out.
    static let minute = Duration.seconds(60)

    @Test("a wait returns when something is recorded")
    func wokenBySignal() async throws {
        let signal = RecordingSignal()
        let seen = signal.changes
        let start = ContinuousClock.now
        async let waited: Void = signal.wait(forChangeAfter: seen, atMost: Self.minute)
        // Signalled only once the wait has begun (else it would see the change and not wait).
        while signal.waiterCount == 0 {
            try #require(start.duration(to: .now) < .seconds(10), "the wait did not begin within 10 s")
            try await Task.sleep(for: .milliseconds(1))
        }
        signal.signal()
        await waited
        #expect(start.duration(to: .now) < .seconds(30))
        #expect(signal.changes == seen + 1)
    }

    @Test("a change recorded before the wait began ends it at once")
    func changedAlready() async {
        let signal = RecordingSignal()
        let seen = signal.changes
        signal.signal()
        let start = ContinuousClock.now
        await signal.wait(forChangeAfter: seen, atMost: Self.minute)
        #expect(start.duration(to: .now) < .seconds(30))
    }

    @Test("a wait ends when its task is cancelled, and after its limit")
    func cancelledAndLimited() async {
        let signal = RecordingSignal()
        let start = ContinuousClock.now
        let waiting = Task { await signal.wait(forChangeAfter: signal.changes, atMost: Self.minute) }
        waiting.cancel()
        await waiting.value
        #expect(start.duration(to: .now) < .seconds(30))
        await signal.wait(forChangeAfter: signal.changes, atMost: .milliseconds(10))
    }
}
