import Testing

@testable import AMQPClient

@Suite("Heartbeats and sleeping, on an injected clock")
struct HeartbeatScheduleTests {
    static let start = ContinuousClock.now

    @Test("with a 60 s heartbeat librabbitmq is called every 15 s, and not before")
    func quarterInterval() {
        var schedule = HeartbeatSchedule(seconds: 60, openedAt: Self.start)
        #expect(schedule.serviceInterval == .seconds(15))
        #expect(!schedule.isDue(at: Self.start + .milliseconds(14_999)))
        #expect(schedule.isDue(at: Self.start + .seconds(15)))
        schedule.serviced(at: Self.start + .seconds(16))
        #expect(schedule.nextService == Self.start + .seconds(31))
    }

    @Test("with heartbeats off librabbitmq is still called every second (to notice a dead socket)")
    func heartbeatsOff() {
        let schedule = HeartbeatSchedule(seconds: 0, openedAt: Self.start)
        #expect(schedule.serviceInterval == .seconds(1))
        #expect(schedule.isDue(at: Self.start + .seconds(1)))
        #expect(HeartbeatSchedule(seconds: -5, openedAt: Self.start).seconds == 0, "a negative interval counts as off")
    }

    @Test("the thread sleeps a quarter interval, or 5 s with heartbeats off, when nothing is due sooner")
    func sleepWithoutDeadlines() {
        #expect(HeartbeatSchedule(seconds: 10, openedAt: Self.start).sleepMilliseconds(at: Self.start, deadlines: []) == 2_500)
        #expect(HeartbeatSchedule(seconds: 0, openedAt: Self.start).sleepMilliseconds(at: Self.start, deadlines: [nil]) == 5_000)
    }

    @Test("a call's or a close's deadline shortens the sleep to just past it; a passed one means no sleep")
    func sleepUntilDeadline() {
        let schedule = HeartbeatSchedule(seconds: 60, openedAt: Self.start)
        let deadlines: [ContinuousClock.Instant?] = [nil, Self.start + .milliseconds(300), Self.start + .seconds(2)]
        #expect(schedule.sleepMilliseconds(at: Self.start, deadlines: deadlines) == 301)
        #expect(schedule.sleepMilliseconds(at: Self.start + .seconds(1), deadlines: deadlines) == 0)
    }

    @Test("a write that makes no progress for two heartbeat intervals, or the write timeout if sooner, kills the connection")
    func writeStall() {
        #expect(HeartbeatSchedule(seconds: 5, openedAt: Self.start).writeStallLimit(writeTimeout: .seconds(30)) == .seconds(10))
        #expect(HeartbeatSchedule(seconds: 60, openedAt: Self.start).writeStallLimit(writeTimeout: .seconds(30)) == .seconds(30))
        #expect(HeartbeatSchedule(seconds: 0, openedAt: Self.start).writeStallLimit(writeTimeout: .seconds(30)) == .seconds(30))
    }
}
