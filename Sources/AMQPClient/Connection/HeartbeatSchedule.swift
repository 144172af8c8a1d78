/// When the I/O thread must call into librabbitmq with nothing to read, and how long it may
/// sleep. librabbitmq sends heartbeats, and notices a silent broker, only inside its read calls:
/// so the thread calls it four times per negotiated interval, or once a second with heartbeats
/// off. Pure arithmetic over the `now` it is given, so tests run it on a clock of their own.
struct HeartbeatSchedule: Equatable {
    /// The negotiated heartbeat interval in seconds; 0 when heartbeats are off.
    private(set) var seconds: Int32
    /// When librabbitmq must next be called even with nothing to read.
    private(set) var nextService: ContinuousClock.Instant

    /// A schedule for a connection that opened at `now` with `seconds` negotiated.
    init(seconds: Int32, openedAt now: ContinuousClock.Instant) {
        self.seconds = max(seconds, 0)
        self.nextService = now + Self.serviceInterval(seconds: self.seconds)
    }

    static func serviceInterval(seconds: Int32) -> Duration {
        seconds > 0 ? .milliseconds(Int(seconds) * 250) : .seconds(1)
    }

    var serviceInterval: Duration { Self.serviceInterval(seconds: seconds) }

    /// Whether librabbitmq is due a call at `now`.
    func isDue(at now: ContinuousClock.Instant) -> Bool { now >= nextService }

    /// librabbitmq was called at `now` (it sent what heartbeats were due): the next call is an
    /// interval away.
    mutating func serviced(at now: ContinuousClock.Instant) {
        nextService = now + serviceInterval
    }

    /// How long the thread may sleep at `now`: a quarter of the heartbeat interval (5 s with
    /// heartbeats off), or until the earliest of `deadlines` has passed, rounded up to the next
    /// millisecond so that it wakes after, not just before.
    func sleepMilliseconds(at now: ContinuousClock.Instant, deadlines: [ContinuousClock.Instant?]) -> Int32 {
        var timeout: Int64 = seconds > 0 ? Int64(seconds) * 250 : 5_000
        for deadline in deadlines {
            guard let deadline else { continue }
            timeout = min(timeout, max(0, now.duration(to: deadline).milliseconds + 1))
        }
        return Int32(timeout)
    }

    /// How long a write may make no progress before the peer counts as dead (it stopped
    /// reading): `writeTimeout`, or two heartbeat intervals (librabbitmq's own rule for a silent
    /// peer) if sooner.
    func writeStallLimit(writeTimeout: Duration) -> Duration {
        seconds > 0 ? min(writeTimeout, .seconds(2 * Int(seconds))) : writeTimeout
    }
}
