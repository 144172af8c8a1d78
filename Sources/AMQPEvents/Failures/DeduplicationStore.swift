import Synchronization

/// Remembers which messages a subscriber has handled, so that one delivered twice (after a lost
/// connection, a crash before the ack, or a publish made again) is acknowledged without being
/// handled again. A message id is recorded only once its handler succeeded.
///
/// ``InMemoryDeduplicationStore`` forgets on restart; `SQLiteDeduplicationStore` (the
/// `AMQPEventsSQLite` library) does not, and lets a handler write its own changes in the same
/// transaction.
public protocol DeduplicationStore: Sendable {
    /// Whether `subscriber` has handled `messageID`.
    func contains(_ messageID: String, subscriber: String) async throws -> Bool
    /// Records that `subscriber` handled `messageID`.
    func record(_ messageID: String, subscriber: String) async throws
}

/// Deduplication in memory, bounded by count and age: the default. It forgets on restart.
public final class InMemoryDeduplicationStore: DeduplicationStore {
    private struct Entry: Hashable {
        var subscriber: String
        var messageID: String
    }

    private struct State {
        var recorded: [Entry: ContinuousClock.Instant] = [:]
        /// In the order recorded, to forget the oldest first.
        var order: [Entry] = []
        var start = 0
    }

    /// The most ids it keeps, over all subscribers; past it, the oldest are forgotten first.
    public let maximumCount: Int
    /// How long it remembers an id.
    public let maximumAge: Duration
    private let state = Mutex(State())

    /// A store that keeps at most `maximumCount` ids (at least 1), each for `maximumAge`.
    public init(maximumCount: Int = 100_000, maximumAge: Duration = .seconds(24 * 3600)) {
        self.maximumCount = max(1, maximumCount)
        self.maximumAge = maximumAge
    }

    public func contains(_ messageID: String, subscriber: String) async throws -> Bool {
        let entry = Entry(subscriber: subscriber, messageID: messageID)
        return state.withLock { state in
            guard let at = state.recorded[entry] else { return false }
            return at.duration(to: .now) <= maximumAge
        }
    }

    public func record(_ messageID: String, subscriber: String) async throws {
        let entry = Entry(subscriber: subscriber, messageID: messageID)
        let now = ContinuousClock.now
        state.withLock { state in
            if state.recorded.updateValue(now, forKey: entry) == nil { state.order.append(entry) }
            // Forget the oldest beyond the count, and the expired.
            while state.start < state.order.count {
                let oldest = state.order[state.start]
                let expired = state.recorded[oldest].map { $0.duration(to: now) > maximumAge } ?? true
                guard state.recorded.count > maximumCount || expired else { break }
                state.recorded[oldest] = nil
                state.start += 1
            }
            if state.start > 1024 && state.start * 2 > state.order.count {
                state.order.removeFirst(state.start)
                state.start = 0
            }
        }
    }

    /// How many ids it holds now.
    public var count: Int { state.withLock { $0.recorded.count } }
}
