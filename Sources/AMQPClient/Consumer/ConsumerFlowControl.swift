/// Whether the I/O thread reads the socket. Not while a consumer's buffer is over
/// ``AMQPConnection/Configuration/consumerBufferLimit``: TCP then makes the broker wait, and
/// memory stays bounded however slowly the application iterates. Reading goes on once every
/// such consumer has taken half its buffer, or has ended (it receives nothing more).
/// Heartbeats still go out meanwhile (the driver sends them).
struct ConsumerFlowControl {
    private var fullConsumers: [ConsumerStream] = []

    /// A delivery was pushed with `result`. Returns whether reading must stop now.
    mutating func pushed(to stream: ConsumerStream, _ result: ConsumerStream.PushResult) -> Bool {
        guard case .acceptedOverLimit = result else { return false }
        fullConsumers.append(stream)
        return true
    }

    /// Whether reading is paused as far as is known: cheap, for the read loop's every frame.
    var isPaused: Bool { !fullConsumers.isEmpty }

    /// Whether the socket may be read now: drops the consumers that drained or ended first.
    mutating func mayRead() -> Bool {
        guard !fullConsumers.isEmpty else { return true }
        fullConsumers.removeAll { !$0.isOverLimit || $0.isFinished }
        return fullConsumers.isEmpty
    }

    /// The connection was lost: the buffers are dropped, and the broker redelivers.
    mutating func reset() {
        fullConsumers.removeAll()
    }
}
