import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A TCP proxy on 127.0.0.1 between the client and the broker, for fault injection: it can cut
/// every connection, black-hole traffic (read and drop it, like a dead network), freeze (stop
/// reading, like a hung broker, so that the client's writes block once the buffers are full),
/// refuse new connections (accept and close them at once, like a broker that is down), or heal.
/// Plain blocking sockets on threads of its own, off Swift's concurrency pool.
final class TCPProxy: Sendable {
    enum Mode { case forward, blackHole, freeze, refuse }

    private struct State {
        var mode = Mode.forward
        var sockets: Set<Int32> = []
        var stopped = false
    }

    let port: Int
    private let targetPort: Int
    private let listener: Int32
    private let state = Mutex(State())

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw ProxyError("cannot listen (errno \(errno))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                self.serve(client)
            }
        }
    }

    var mode: Mode {
        get { state.withLock { $0.mode } }
        set { state.withLock { $0.mode = newValue } }
    }

    /// Closes every proxied connection (both sides see a reset or end of stream).
    func cutAll() {
        let sockets = state.withLock { state -> Set<Int32> in
            defer { state.sockets.removeAll() }
            return state.sockets
        }
        for socket in sockets {
            shutdown(socket, Int32(SHUT_RDWR))
        }
    }

    func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        cutAll()
    }

    private func serve(_ client: Int32) {
        if mode == .refuse {
            close(client)
            return
        }
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = Self.loopback(port: targetPort)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(client)
            close(server)
            return
        }
        state.withLock {
            $0.sockets.insert(client)
            $0.sockets.insert(server)
        }
        Thread.detachNewThread { [self] in self.pump(from: client, to: server) }
        Thread.detachNewThread { [self] in self.pump(from: server, to: client) }
    }

    private func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            // Frozen: read nothing. (The proxy's own threads poll the mode; no test waits on this.)
            while mode == .freeze && !state.withLock({ $0.stopped }) { usleep(10_000) }
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            if mode == .blackHole { continue }  // the bytes vanish, as on a dead network
            var sent = 0
            while sent < count {
                let written = buffer.withUnsafeBytes { send(destination, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL)) }
                guard written > 0 else { break }
                sent += written
            }
            if sent < count { break }
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(destination, Int32(SHUT_RDWR))
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return address
    }
}

struct ProxyError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
