#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ

/// Where the client's own writes go: straight to the socket, or through the connection's TLS
/// session on it.
enum Transport: Sendable, Equatable {
    case plain(socket: Int32)
    case tls(TLSSession, socket: Int32)

    var socket: Int32 {
        switch self {
        case .plain(let socket), .tls(_, let socket): socket
        }
    }

    enum SendResult {
        case sent(Int)
        /// Nothing went: wait for these `poll` events, then send the same bytes again.
        case wouldBlock(events: Int16)
        case failed
    }

    /// Writes what the socket takes now, without waiting.
    func send(_ bytes: UnsafeRawBufferPointer) -> SendResult {
        switch self {
        case .plain(let socket):
            while true {
                let sent = sendNow(socket, bytes)
                if sent >= 0 { return sent > 0 || bytes.isEmpty ? .sent(sent) : .failed }
                switch errno {
                case EINTR: continue
                case EAGAIN, EWOULDBLOCK: return .wouldBlock(events: Int16(POLLOUT))
                default: return .failed
                }
            }
        case .tls(let session, _):
            switch session.write(bytes) {
            case .transferred(let count): return .sent(count)
            case .wouldBlock(let needsRead): return .wouldBlock(events: Int16(needsRead ? POLLIN : POLLOUT))
            case .closed, .failed: return .failed
            }
        }
    }

    static func == (lhs: Transport, rhs: Transport) -> Bool {
        switch (lhs, rhs) {
        case (.plain(let a), .plain(let b)): a == b
        case (.tls(let a, let x), .tls(let b, let y)): a === b && x == y
        default: false
        }
    }
}

/// `send(2)` without waiting and without SIGPIPE. (A free function: inside `Transport`, `send`
/// names the method.)
private func sendNow(_ socket: Int32, _ bytes: UnsafeRawBufferPointer) -> Int {
    send(socket, bytes.baseAddress, bytes.count, camqp_nosignal_flag() | Int32(MSG_DONTWAIT))
}
