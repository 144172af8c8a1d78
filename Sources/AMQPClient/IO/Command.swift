typealias ReplyContinuation = CancellableContinuation<ServerMethod>

/// Work handed from any task to the connection's I/O thread.
enum Command: Sendable {
    case openChannel(CancellableContinuation<AMQPChannel>)
    /// A synchronous method: the continuation gets the broker's reply.
    case call(ChannelRef, ClientMethod, ReplyContinuation)
    /// An ack, nack or reject of a delivery from the channel's `generation`: nothing to wait for.
    case settle(ChannelRef, generation: UInt32, ClientMethod)
    case publish(ChannelRef, PublishRequest)
    /// `basic.consume`, with the stream registered before the method is sent so no delivery is missed.
    case consume(ChannelRef, ClientMethod, ConsumerStream, ReplyContinuation)
    /// `basic.cancel`, then requeue the deliveries the application never saw.
    case stopConsumer(ChannelRef, ConsumerStream, requeue: [AMQPDelivery], ReplyContinuation?)
    case closeChannel(ChannelRef, ReplyContinuation)
    case closeConnection

    /// Fails whatever waits on this command.
    func fail(_ error: AMQPError) {
        switch self {
        case .openChannel(let continuation): continuation.resume(throwing: error)
        case .call(_, _, let continuation), .closeChannel(_, let continuation): continuation.resume(throwing: error)
        case .consume(_, _, let stream, let continuation):
            stream.finish(error)
            continuation.resume(throwing: error)
        case .stopConsumer(_, let stream, _, let continuation):
            stream.finish(nil)
            continuation?.resume(throwing: error)
        case .publish(_, let request):
            request.confirm?.fail(error)  // never written: certainly not published
        case .settle, .closeConnection: break
        }
    }

    /// Can complete without the broker while the connection recovers: the channel or consumer
    /// ends on the client's side, and the broker has forgotten it with the lost connection.
    var needsNoBroker: Bool {
        switch self {
        case .closeChannel, .stopConsumer: true
        default: false
        }
    }
}
