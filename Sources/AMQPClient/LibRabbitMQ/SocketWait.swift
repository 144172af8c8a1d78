#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ

/// Sleeps until one of two descriptors is ready or the timeout passes, with microsecond
/// timeouts where the platform has them (`ppoll`; `poll` rounds up to milliseconds elsewhere).
/// Here so that the I/O loop imports no C: the shim function lives beside librabbitmq's.
enum SocketWait {
    /// Waits on `descriptors` (a descriptor of -1 is skipped) for at most `microseconds`;
    /// their `revents` say which is ready.
    static func wait(_ descriptors: inout (pollfd, pollfd), microseconds: Int64) {
        _ = withUnsafeMutableBytes(of: &descriptors) {
            camqp_poll_microseconds($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, microseconds)
        }
    }
}
