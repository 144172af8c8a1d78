/// A consumer as its channel's bookkeeping knows it: the stream its deliveries go to, and how
/// to start it again on a new connection.
///
/// A class: every delivery looks its consumer up, and a reference is cheaper to fetch from the
/// dictionary than a copy of the spec's strings and arguments. Touched only by the I/O thread.
final class ConsumerRecord {
    let stream: ConsumerStream
    /// How the consumer was started; `nil` once it is being cancelled, so that a recovery never
    /// brings back a consumer the application stopped.
    var restoreSpec: Spec?

    init(stream: ConsumerStream, restoreSpec: Spec?) {
        self.stream = stream
        self.restoreSpec = restoreSpec
    }

    struct Spec {
        var queue: String
        let noAck: Bool
        let exclusive: Bool
        let arguments: AMQPFieldTable
        /// Consumers restore in the order they were started.
        let order: UInt64

        /// The same consumer, reading a stream from the offset after `offset`.
        func resuming(after offset: Int64) -> Spec {
            var arguments = self.arguments
            arguments["x-stream-offset"] = .int64(offset + 1)
            return Spec(queue: queue, noAck: noAck, exclusive: exclusive, arguments: arguments, order: order)
        }

        func consumeMethod(consumerTag: String) -> ClientMethod {
            .basicConsume(queue: queue, consumerTag: consumerTag, noAck: noAck, exclusive: exclusive, arguments: arguments)
        }
    }
}
