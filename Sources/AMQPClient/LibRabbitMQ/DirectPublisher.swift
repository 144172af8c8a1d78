/// Writes a publish straight to the socket from the publishing task, while the I/O thread
/// sleeps: a sporadic publish then costs no thread hand-off, which is most of its latency.
///
/// Only for a publish that needs nothing from the I/O thread's state: no confirm to track, no
/// held commands, nothing queued before it. The write never blocks: what the socket does not
/// take at once stays here, and the I/O thread writes it before anything else.
///
/// `@unchecked Sendable` is sound because of the claim protocol in ``ConnectionCore``: a task
/// uses this object only between claiming it (under the core's lock, and only while the I/O
/// thread sleeps in `poll`) and releasing it; the I/O thread uses it only after it woke and saw,
/// under the same lock, that no claim is held, and no task can claim it while the I/O thread is
/// awake. So exactly one thread touches it at a time, and the lock orders their accesses.
final class DirectPublisher: @unchecked Sendable {
    private let writer = FrameWriter()

    enum Outcome {
        /// Everything is on the socket.
        case written
        /// Some bytes are left for the I/O thread to write.
        case remainder
        /// The frames could not be encoded (nothing was written).
        case failed(LibraryStatus)
    }

    /// Encodes the publish and writes as much of it as the socket takes without waiting.
    func write(_ request: PublishRequest, channel: UInt16, transport: Transport, frameMax: Int) -> Outcome {
        writer.frameMax = frameMax
        let status = writer.appendPublish(request, channel: channel)
        guard status.isOK else { return .failed(status) }
        return writer.sendWithoutWaiting(to: transport) ? .written : .remainder
    }

    /// I/O thread: writes what a direct publish left, waiting as long as ``FrameWriter/flush(to:limits:)`` does.
    func flushRemainder(to transport: Transport, limits: FrameWriter.WriteLimits) -> LibraryStatus {
        writer.flush(to: transport, limits: limits)
    }

    /// I/O thread: the connection is gone, and so is what was left for it.
    func discard() {
        writer.discard()
    }
}
