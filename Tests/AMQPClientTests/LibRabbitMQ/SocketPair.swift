#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A connected pair of local sockets: the test writes to one end and reads what arrived.
enum SocketPair {
    struct Failure: Error {}

    /// Runs `write` with the writing end (non-blocking, as librabbitmq's socket is) and returns
    /// every byte that reached the other end.
    static func capture(_ write: (Int32) throws -> Void) throws -> [UInt8] {
        var fds: [Int32] = [0, 0]
        #if canImport(Glibc)
        let type = Int32(SOCK_STREAM.rawValue)
        #else
        let type = SOCK_STREAM
        #endif
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw Failure() }
        defer {
            close(fds[0])
            close(fds[1])
        }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        // The tests write far less than the socket buffer holds: reading after the write is enough.
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        func drain() {
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fds[1], $0.baseAddress, $0.count) }
                guard count > 0 else { return }
                received.append(contentsOf: buffer[0..<count])
            }
        }
        try write(fds[0])
        drain()
        return received
    }
}
