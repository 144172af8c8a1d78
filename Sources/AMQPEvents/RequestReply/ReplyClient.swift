import AMQPClient
import Synchronization

/// The requesting side of request/reply: one channel that consumes `amq.rabbitmq.reply-to` (in
/// no-ack mode, before the first request, as direct reply-to requires) and publishes the requests,
/// and a table of the requests waiting for their reply, by correlation id. Many requests may be
/// in flight at once.
final class ReplyClient: Sendable {
    static let replyTo = "amq.rabbitmq.reply-to"

    let channel: AMQPChannel
    private let waiting = Mutex<[String: CheckedContinuation<AMQPDelivery, any Error>]>([:])

    private init(channel: AMQPChannel) {
        self.channel = channel
    }

    static func open(on connection: AMQPConnection) async throws(AMQPError) -> ReplyClient {
        let channel = try await connection.openChannel()
        do {
            try await channel.enablePublisherConfirms()
            let consumer = try await channel.consume(queue: replyTo, noAck: true)
            let client = ReplyClient(channel: channel)
            Task { [weak client] in
                do {
                    for try await reply in consumer {
                        guard let client else { return }
                        client.deliver(reply)
                    }
                    client?.failAll(AMQPError(code: .channelClosed, message: "the reply channel closed"))
                } catch {
                    client?.failAll(AMQPError.wrapping(error))
                }
            }
            return client
        } catch {
            await channel.close()
            throw error
        }
    }

    /// Waits for the reply with `correlationID`; `publish` sends the request once the waiter is in
    /// place (a fast reply must find it).
    func waitForReply(
        correlationID: String, timeout: Duration, publish: @escaping @Sendable () async throws -> AMQPPublishConfirmation
    ) async throws -> AMQPDelivery {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<AMQPDelivery, any Error>) in
                waiting.withLock { $0[correlationID] = continuation }
                // One task per request watches for an unroutable request, then for the timeout.
                Task {
                    do {
                        try await publish().confirmed()
                    } catch {
                        self.fail(correlationID, Self.requestFailure(error))
                        return
                    }
                    try? await Task.sleep(for: timeout)
                    self.fail(
                        correlationID, EventError(code: .timedOut, message: "no reply within \(timeout) (is the responder running?)"))
                }
            }
        } onCancel: {
            fail(correlationID, CancellationError())
        }
    }

    private static func requestFailure(_ error: any Error) -> EventError {
        let error = AMQPError.wrapping(error)
        if error.code == .messageReturned {
            return EventError(code: .noResponder, message: "no queue takes the request: is its responder declared?", underlying: error)
        }
        return EventError(code: .publishFailed, message: "the request was not published: \(error.message)", underlying: error)
    }

    private func deliver(_ reply: AMQPDelivery) {
        guard let id = reply.properties.correlationID,
            let continuation = waiting.withLock({ $0.removeValue(forKey: id) })
        else { return }  // late (timed out already) or not ours
        continuation.resume(returning: reply)
    }

    private func fail(_ correlationID: String, _ error: any Error) {
        waiting.withLock { $0.removeValue(forKey: correlationID) }?.resume(throwing: error)
    }

    private func failAll(_ error: AMQPError) {
        let all = waiting.withLock { waiting in
            defer { waiting.removeAll() }
            return Array(waiting.values)
        }
        for continuation in all {
            continuation.resume(throwing: EventError.broker("waiting for a reply", error))
        }
    }
}

/// Opens the reply client on first use, and again if its channel closed.
final class LazyReplyClient: Sendable {
    private let opening = Mutex<Task<ReplyClient, any Error>?>(nil)

    func get(_ connection: AMQPConnection) async throws(EventError) -> ReplyClient {
        let task = opening.withLock { task in
            if let task { return task }
            let opened = Task { () async throws -> ReplyClient in try await ReplyClient.open(on: connection) }
            task = opened
            return opened
        }
        do {
            let client = try await task.value
            if client.channel.isOpen || !connection.isOpen { return client }
            opening.withLock { if $0 == task { $0 = nil } }
            return try await get(connection)
        } catch let error as EventError {
            throw error
        } catch {
            opening.withLock { if $0 == task { $0 = nil } }
            throw EventError.broker("opening the reply channel", AMQPError.wrapping(error))
        }
    }
}
