#if SQLite
public import AMQPEvents
public import Foundation
public import GRDB

/// Deduplication (an inbox) and a transactional outbox in one SQLite database, through GRDB.
///
/// - As a ``DeduplicationStore`` it remembers handled message ids across restarts. With
///   ``handleOnce(_:_:)`` a handler writes its own changes and the message id in one transaction
///   (the inbox pattern): either both happen or neither, so a crash between the handling and the
///   ack ends in a redelivery that is recognised and skipped.
/// - As an outbox, ``enqueue(_:to:routingKey:in:)`` stores an event in the application's own
///   transaction (with the order it belongs to), and ``OutboxRelay`` publishes it afterwards with
///   confirms: an order committed is published even if the process dies right after the commit.
public final class SQLiteEventStore: DeduplicationStore, Sendable {
    public let database: any DatabaseWriter
    let coder: any EventCoder
    let appID: String?

    /// Opens (or creates) the database at `path`.
    public convenience init(path: String, coder: any EventCoder = JSONEventCoder(), appID: String? = nil) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        try self.init(database: DatabaseQueue(path: path, configuration: configuration), coder: coder, appID: appID)
    }

    /// Uses the application's database, adding this store's two tables.
    public init(database: any DatabaseWriter, coder: any EventCoder = JSONEventCoder(), appID: String? = nil) throws {
        self.database = database
        self.coder = coder
        self.appID = appID
        var migrator = DatabaseMigrator()
        migrator.registerMigration("amqp-events-v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE amqp_processed_messages (
                        subscriber TEXT NOT NULL,
                        message_id TEXT NOT NULL,
                        processed_at DATETIME NOT NULL,
                        PRIMARY KEY (subscriber, message_id)
                    );
                    CREATE TABLE amqp_outbox (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        message_id TEXT NOT NULL UNIQUE,
                        type TEXT NOT NULL,
                        schema_version INTEGER NOT NULL,
                        exchange TEXT NOT NULL,
                        routing_key TEXT NOT NULL,
                        body BLOB NOT NULL,
                        correlation_id TEXT,
                        causation_id TEXT,
                        created_at DATETIME NOT NULL,
                        sent_at DATETIME
                    );
                    CREATE INDEX amqp_outbox_pending ON amqp_outbox (id) WHERE sent_at IS NULL;
                    """)
        }
        // Per-row backoff: an event the broker will not take (unroutable, say) waits, and holds up
        // only the later events to the same exchange and routing key.
        migrator.registerMigration("amqp-events-v2-outbox-backoff") { db in
            try db.execute(
                sql: """
                    ALTER TABLE amqp_outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE amqp_outbox ADD COLUMN next_attempt_at DATETIME;
                    ALTER TABLE amqp_outbox ADD COLUMN last_error TEXT;
                    """)
        }
        try migrator.migrate(database)
    }

    // MARK: Deduplication

    public func contains(_ messageID: String, subscriber: String) async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(
                db, sql: "SELECT 1 FROM amqp_processed_messages WHERE subscriber = ? AND message_id = ?",
                arguments: [subscriber, messageID]) ?? false
        }
    }

    public func record(_ messageID: String, subscriber: String) async throws {
        try await database.write { db in try Self.record(messageID, subscriber: subscriber, in: db) }
    }

    static func record(_ messageID: String, subscriber: String, in db: Database) throws {
        try db.execute(
            sql: "INSERT OR IGNORE INTO amqp_processed_messages (subscriber, message_id, processed_at) VALUES (?, ?, ?)",
            arguments: [subscriber, messageID, Date()])
    }

    /// The inbox pattern: in one transaction, runs `body` (the handler's own writes) and records
    /// the message as handled by the context's queue. Returns `false`, without running `body`,
    /// when the message was handled already.
    @discardableResult
    public func handleOnce(_ context: EventContext, _ body: @escaping @Sendable (Database) throws -> Void) async throws -> Bool {
        let (messageID, subscriber) = (context.metadata.messageID, context.queue)
        return try await database.write { db in
            let seen = try Bool.fetchOne(
                db, sql: "SELECT 1 FROM amqp_processed_messages WHERE subscriber = ? AND message_id = ?",
                arguments: [subscriber, messageID]) ?? false
            if seen { return false }
            try body(db)
            try Self.record(messageID, subscriber: subscriber, in: db)
            return true
        }
    }

    /// Forgets ids handled before `date` (keep them longer than a message can be redelivered).
    public func forgetHandled(before date: Date) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM amqp_processed_messages WHERE processed_at < ?", arguments: [date])
        }
    }

    // MARK: Outbox

    /// Stores `event` for publishing to `exchange`, in the caller's transaction `db`. Inside a
    /// handler it inherits the handled event's correlation and causation ids. Returns its envelope.
    @discardableResult
    public func enqueue<Event: AMQPEvent>(
        _ event: Event, to exchange: String, routingKey: String? = nil, correlationID: String? = nil, in db: Database
    ) throws -> EventMetadata {
        let handling = EventContext.current
        let id = UUID().uuidString.lowercased()
        let metadata = EventMetadata(
            type: Event.eventType, messageID: id, timestamp: Date(),
            correlationID: correlationID ?? handling?.metadata.correlationID ?? id,
            causationID: handling?.metadata.messageID, schemaVersion: Event.schemaVersion, appID: appID)
        try db.execute(
            sql: """
                INSERT INTO amqp_outbox
                    (message_id, type, schema_version, exchange, routing_key, body, correlation_id, causation_id, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                id, metadata.type, metadata.schemaVersion, exchange, routingKey ?? Event.eventType,
                Data(try coder.encode(event)), metadata.correlationID, metadata.causationID, metadata.timestamp,
            ])
        return metadata
    }

    /// Events stored and not yet confirmed by the broker.
    public func pendingCount() async throws -> Int {
        try await database.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM amqp_outbox WHERE sent_at IS NULL") ?? 0
        }
    }

    struct PendingEvent: Sendable {
        var id: Int64
        var metadata: EventMetadata
        var exchange: String
        var routingKey: String
        var body: [UInt8]
    }

    /// The events due at `now`, oldest first: not sent, not waiting for a retry, and not behind an
    /// earlier event to the same exchange and routing key that waits (the order per destination
    /// holds; other destinations go on).
    func pending(limit: Int, at now: Date = Date()) async throws -> [PendingEvent] {
        let appID = self.appID
        return try await database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT id, message_id, type, schema_version, exchange, routing_key, body, correlation_id, causation_id,
                           created_at
                    FROM amqp_outbox AS o
                    WHERE sent_at IS NULL
                      AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
                      AND NOT EXISTS (
                          SELECT 1 FROM amqp_outbox AS earlier
                          WHERE earlier.sent_at IS NULL AND earlier.id < o.id
                            AND earlier.exchange = o.exchange AND earlier.routing_key = o.routing_key
                            AND earlier.next_attempt_at > :now)
                    ORDER BY id LIMIT :limit
                    """,
                arguments: ["now": now, "limit": limit]
            ).map { row in
                let body: Data = row["body"]
                return PendingEvent(
                    id: row["id"],
                    metadata: EventMetadata(
                        type: row["type"], messageID: row["message_id"], timestamp: row["created_at"],
                        correlationID: row["correlation_id"], causationID: row["causation_id"],
                        schemaVersion: row["schema_version"], appID: appID),
                    exchange: row["exchange"], routingKey: row["routing_key"], body: Array(body))
            }
        }
    }

    /// Publishing event `id` failed: it waits with a backoff that doubles from 1 s up to 5 min.
    /// Returns when it is tried next.
    @discardableResult
    func markFailed(_ id: Int64, error: String, at now: Date = Date()) async throws -> Date {
        try await database.write { db in
            let attempts = try Int.fetchOne(db, sql: "SELECT attempts FROM amqp_outbox WHERE id = ?", arguments: [id]) ?? 0
            let next = now.addingTimeInterval(Self.retryDelay(afterAttempts: attempts + 1))
            try db.execute(
                sql: "UPDATE amqp_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?",
                arguments: [next, String(error.prefix(1000)), id])
            return next
        }
    }

    /// 1 s after the first failure, doubling, at most 5 minutes.
    static func retryDelay(afterAttempts attempts: Int) -> TimeInterval {
        min(300, pow(2, Double(min(max(attempts - 1, 0), 16))))
    }

    func markSent(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        try await database.write { db in
            let now = Date()
            for id in ids {
                try db.execute(sql: "UPDATE amqp_outbox SET sent_at = ? WHERE id = ?", arguments: [now, id])
            }
        }
    }
}
#endif
