#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Notices an I/O thread stuck inside librabbitmq.
///
/// librabbitmq writes without a deadline. When the peer stops reading (a frozen broker) and the
/// socket buffers fill up, the I/O thread blocks in `send` and can no longer notice missed
/// heartbeats. The I/O thread marks each stretch of work; a shared watchdog thread shuts down
/// the socket when a stretch has lasted half a heartbeat interval and no frame has arrived for
/// two intervals (librabbitmq's own rule for a dead peer), which makes the blocked call fail
/// and the connection count as lost.
final class StallWatch: Sendable {
    private struct Stretch {
        let since: ContinuousClock.Instant
        let socket: Int32
        let heartbeat: Duration
        let lastFrame: ContinuousClock.Instant

        func isStuck(at now: ContinuousClock.Instant) -> Bool {
            now - since > heartbeat / 2 && now - lastFrame > heartbeat * 2
        }
    }

    private struct State {
        var stretch: Stretch?
        /// Set when the watchdog shut the socket down, until the I/O thread reads it.
        var fired: Duration?
    }

    /// The socket stays open while `stretch` is set: the I/O thread ends the stretch (taking the
    /// lock) before it destroys the connection, so the watchdog never shuts down a reused fd.
    private let state = Mutex(State())

    /// The I/O thread starts work that may block in librabbitmq on `socket`; the last frame
    /// from the broker arrived at `lastFrame`.
    func begin(socket: Int32, heartbeat: Duration, lastFrame: ContinuousClock.Instant) {
        state.withLock {
            $0.stretch = Stretch(since: .now, socket: socket, heartbeat: heartbeat, lastFrame: lastFrame)
        }
    }

    /// The I/O thread's work is done (or its connection is about to be destroyed).
    func end() {
        state.withLock { $0.stretch = nil }
    }

    /// Whether the watchdog cut the connection (and how long the broker had been silent); resets it.
    func takeFired() -> Duration? {
        state.withLock { state in
            defer { state.fired = nil }
            return state.fired
        }
    }

    /// Run by the watchdog thread.
    fileprivate func shutDownIfStuck() {
        state.withLock { state in
            let now = ContinuousClock.now
            guard let stretch = state.stretch, stretch.isStuck(at: now) else { return }
            shutdown(stretch.socket, Int32(SHUT_RDWR))
            state.fired = now - stretch.lastFrame
            state.stretch = nil
        }
    }

    /// Starts watching this I/O thread until the watch is released.
    func register() {
        StallWatchdog.watch(self)
    }
}

/// The one thread that checks every ``StallWatch`` four times a second. It runs only while some
/// connection with heartbeats exists.
enum StallWatchdog {
    private struct Entry: Sendable {
        weak var watch: StallWatch?
    }

    private struct Registry {
        var entries: [Entry] = []
        var running = false
    }

    private static let registry = Mutex(Registry())

    static func watch(_ watch: StallWatch) {
        let start = registry.withLock { registry -> Bool in
            registry.entries.append(Entry(watch: watch))
            defer { registry.running = true }
            return !registry.running
        }
        guard start else { return }
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t? = nil
        #endif
        let status = pthread_create(&thread, nil, { _ in
            StallWatchdog.run()
            return nil
        }, nil)
        guard status == 0 else {
            registry.withLock { $0.running = false }
            return
        }
        #if canImport(Glibc)
        pthread_detach(thread)
        #else
        pthread_detach(thread!)
        #endif
    }

    private static func run() {
        while true {
            usleep(250_000)
            let watches = registry.withLock { registry -> [StallWatch]? in
                registry.entries.removeAll { $0.watch == nil }
                if registry.entries.isEmpty {
                    registry.running = false
                    return nil
                }
                return registry.entries.compactMap(\.watch)
            }
            guard let watches else { return }
            for watch in watches { watch.shutDownIfStuck() }
        }
    }
}
