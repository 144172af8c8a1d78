#if SQLite
import AMQPClient
import AMQPEvents
@testable import AMQPEventsSQLite
import Foundation
import GRDB
import Testing

struct Shelved: AMQPEvent {
    static let eventType = "Shelved"
    var isbn: String
}

@Suite("SQLite event store (no broker)")
struct SQLiteEventStoreTests {
    static func store() throws -> SQLiteEventStore {
        try SQLiteEventStore(database: DatabaseQueue(), appID: "tests")
    }

    @Test("deduplication survives in the database; ids are per subscriber")
    func deduplication() async throws {
        let store = try Self.store()
        #expect(try await !store.contains("m-1", subscriber: "q"))
        try await store.record("m-1", subscriber: "q")
        try await store.record("m-1", subscriber: "q")  // twice is fine
        #expect(try await store.contains("m-1", subscriber: "q"))
        #expect(try await !store.contains("m-1", subscriber: "other"))
        try await store.forgetHandled(before: Date().addingTimeInterval(60))
        #expect(try await !store.contains("m-1", subscriber: "q"))
    }

    @Test("the outbox keeps events in the caller's transaction: a rolled-back transaction leaves none")
    func outboxTransaction() async throws {
        let store = try Self.store()
        try await store.database.write { db in
            try db.execute(sql: "CREATE TABLE books (isbn TEXT PRIMARY KEY)")
        }
        struct Rollback: Error {}
        await #expect(throws: Rollback.self) {
            try await store.database.write { db in
                try db.execute(sql: "INSERT INTO books VALUES ('1')")
                try store.enqueue(Shelved(isbn: "1"), to: "books", in: db)
                throw Rollback()
            }
        }
        #expect(try await store.pendingCount() == 0)
        let metadata = try await store.database.write { db in
            try db.execute(sql: "INSERT INTO books VALUES ('2')")
            return try store.enqueue(Shelved(isbn: "2"), to: "books", correlationID: "c-9", in: db)
        }
        #expect(try await store.pendingCount() == 1)
        #expect(metadata.type == "Shelved")
        #expect(metadata.correlationID == "c-9")
        #expect(metadata.appID == "tests")
        #expect(UUID(uuidString: metadata.messageID) != nil)
    }

    @Test("an event the broker will not take waits with a growing backoff, and holds up only later events to its destination")
    func outboxBackoff() async throws {
        let store = try Self.store()
        let ids = try await store.database.write { db in
            [
                try store.enqueue(Shelved(isbn: "a"), to: "books", routingKey: "nowhere", in: db),
                try store.enqueue(Shelved(isbn: "b"), to: "books", routingKey: "nowhere", in: db),
                try store.enqueue(Shelved(isbn: "c"), to: "books", routingKey: "shelved", in: db),
            ].map(\.messageID)
        }
        let now = Date()
        let all = try await store.pending(limit: 10, at: now)
        #expect(all.map(\.metadata.messageID) == ids)
        let retryAt = try await store.markFailed(all[0].id, error: "unroutable", at: now)
        #expect(retryAt == now.addingTimeInterval(1))
        // "b" waits behind "a" (same exchange and routing key); "c" goes on.
        #expect(try await store.pending(limit: 10, at: now).map(\.metadata.messageID) == [ids[2]])
        #expect(try await store.pending(limit: 10, at: retryAt).map(\.metadata.messageID) == ids)
        // The backoff doubles with each failure, up to 5 minutes.
        #expect(try await store.markFailed(all[0].id, error: "unroutable", at: now) == now.addingTimeInterval(2))
        #expect(SQLiteEventStore.retryDelay(afterAttempts: 3) == 4)
        #expect(SQLiteEventStore.retryDelay(afterAttempts: 30) == 300)
        try await store.markSent([all[2].id])
        #expect(try await store.pendingCount() == 2)
    }
}
#endif
