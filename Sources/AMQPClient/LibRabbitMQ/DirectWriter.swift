/// Writes a publish or a settlement straight to the socket from the task that makes it, while
/// the I/O thread sleeps: a sporadic publish, or the ack of a consumer that waits for its next
/// delivery, then costs no thread hand-off, which is most of its CPU and latency.
///
/// Only while nothing queued waits to be written before it (see ``MailboxState``). The write
/// never blocks: what the socket does not take at once stays here, and the I/O thread writes it
/// before anything else.
///
/// `@unchecked Sendable` is sound because of the claim protocol in ``ConnectionCore``: a task
/// uses this object only between claiming it (under the core's lock, and only while the I/O
/// thread sleeps in `poll`) and releasing it; the I/O thread uses it only after it woke and saw,
/// under the same lock, that no claim is held, and no task can claim it while the I/O thread is
/// awake. So exactly one thread touches it at a time, and the lock orders their accesses.
final class DirectWriter: @unchecked Sendable {
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
    func write(_ request: PublishRequest, channel: UInt16, claim: DirectWriteClaim) -> Outcome {
        writer.frameMax = claim.frameMax
        return send(writer.appendPublish(request, channel: channel), to: claim.transport)
    }

    /// Encodes the method (an ack, nack or reject) and writes as much of it as the socket takes
    /// without waiting.
    func write(_ method: ClientMethod, channel: UInt16, claim: DirectWriteClaim) -> Outcome {
        writer.frameMax = claim.frameMax
        return send(writer.append(method, channel: channel), to: claim.transport)
    }

    private func send(_ encoded: LibraryStatus, to transport: Transport) -> Outcome {
        guard encoded.isOK else { return .failed(encoded) }
        return writer.sendWithoutWaiting(to: transport) ? .written : .remainder
    }

    /// I/O thread: writes what a direct write left, waiting as long as ``FrameWriter/flush(to:limits:)`` does.
    func flushRemainder(to transport: Transport, limits: FrameWriter.WriteLimits) -> LibraryStatus {
        writer.flush(to: transport, limits: limits)
    }

    /// I/O thread: the connection is gone, and so is what was left for it.
    func discard() {
        writer.discard()
    }
}
