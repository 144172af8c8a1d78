#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ

/// Sits between librabbitmq and the socket. Every byte the connection receives is checked by
/// an ``InboundFrameScanner``, in order, before librabbitmq parses it; with TLS, every byte
/// librabbitmq reads or writes goes through the connection's ``TLSSession``.
///
/// It works by giving the connection's librabbitmq socket a class table of its own (the socket's
/// first field; see `camqp_socket_class` in the shim): librabbitmq's TCP functions with `recv`
/// checked, and for TLS `open`, `send` and `recv` through OpenSSL. The bridge in charge is found
/// through a thread-specific slot: a connection is only ever used by its I/O thread, which
/// installs its bridge.
final class SocketBridge {
    private var scanner: InboundFrameScanner
    /// Whether a channel number is one the client opened and has not seen closed.
    var isChannelOpen: (UInt16) -> Bool = { _ in false }
    /// The first violation found; reads fail from then on.
    private(set) var violation: ProtocolViolation?
    /// The TLS session of an `amqps` connection.
    let tls: TLSSession?
    /// Told the socket as soon as its TCP connection is made, before the TLS handshake and the
    /// login block on it.
    var socketOpened: (Int32) -> Void = { _ in }

    init(limits: InboundFrameScanner.Limits, tls: TLSSession?) {
        scanner = InboundFrameScanner(limits: limits)
        self.tls = tls
    }

    var limits: InboundFrameScanner.Limits {
        get { scanner.limits }
        set { scanner.limits = newValue }
    }

    /// Bridges `socket` (a librabbitmq TCP socket) for the calling thread.
    func install(on socket: OpaquePointer) {
        let header = UnsafeMutableRawPointer(socket).assumingMemoryBound(to: camqp_socket_header.self)
        header.pointee.klass = tls == nil ? Self.checkedTCPClass : Self.tlsClass
        pthread_setspecific(Self.currentKey, Unmanaged.passUnretained(self).toOpaque())
    }

    /// The calling thread's connection is gone.
    func uninstall() {
        if pthread_getspecific(Self.currentKey) == Unmanaged.passUnretained(self).toOpaque() {
            pthread_setspecific(Self.currentKey, nil)
        }
    }

    /// Checks bytes just received. Returns how many of them may go on to librabbitmq: all of
    /// them, or after a violation the whole frames before it (once librabbitmq has handled
    /// those, its next read fails).
    private func inspect(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard violation == nil else { return nil }
        violation = scanner.scan(bytes, isOpen: isChannelOpen)
        guard violation != nil else { return bytes.count }
        return scanner.validPrefix > 0 ? scanner.validPrefix : nil
    }

    // MARK: The socket classes

    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "could not create a thread-specific key")
        return key
    }()

    /// The bridge of the calling thread. A socket used on a thread without one is refused.
    private static var current: SocketBridge? {
        pthread_getspecific(currentKey).map { Unmanaged<SocketBridge>.fromOpaque($0).takeUnretainedValue() }
    }

    private static let badData = Int(AMQP_STATUS_BAD_AMQP_DATA.rawValue)
    private static let needRead = -0x1301  // AMQP_PRIVATE_STATUS_SOCKET_NEEDREAD (amqp_socket.h)
    private static let needWrite = -0x1302  // AMQP_PRIVATE_STATUS_SOCKET_NEEDWRITE

    /// librabbitmq's own TCP socket class, read from a socket made for the purpose.
    // nonisolated(unsafe): written once by the lazy initialiser, then only read; the table it
    // points to is a constant inside librabbitmq.
    nonisolated(unsafe) private static let tcpClass: UnsafePointer<camqp_socket_class> = {
        let state = amqp_new_connection()!
        defer { amqp_destroy_connection(state) }
        let socket = amqp_tcp_socket_new(state)!
        return UnsafeMutableRawPointer(socket).assumingMemoryBound(to: camqp_socket_header.self).pointee.klass
    }()

    /// Whether the current bridge found a violation: reads fail from then on.
    private static var hasFailed: Bool { current?.violation != nil }

    /// Received bytes go through the current bridge's scanner.
    private static func checked(_ received: Int, _ buffer: UnsafeMutableRawPointer?) -> Int {
        guard received > 0 else { return received }
        guard let bridge = current else { return badData }
        return bridge.inspect(UnsafeRawBufferPointer(start: buffer, count: received)) ?? badData
    }

    /// librabbitmq's TCP class with `recv` checked.
    // nonisolated(unsafe): allocated and filled once by the lazy initialiser, never written again.
    nonisolated(unsafe) private static let checkedTCPClass: UnsafePointer<camqp_socket_class> = {
        let table = UnsafeMutablePointer<camqp_socket_class>.allocate(capacity: 1)
        table.initialize(to: tcpClass.pointee)
        table.pointee.open = { base, host, port, timeout in
            let status = SocketBridge.tcpClass.pointee.open(base, host, port, timeout)
            if status == AMQP_STATUS_OK.rawValue { current?.socketOpened(SocketBridge.tcpClass.pointee.get_sockfd(base)) }
            return status
        }
        table.pointee.recv = { base, buffer, length, flags in
            if hasFailed { return badData }  // nothing more is read once a violation was found
            return SocketBridge.checked(SocketBridge.tcpClass.pointee.recv(base, buffer, length, flags), buffer)
        }
        return UnsafePointer(table)
    }()

    /// librabbitmq's TCP class with the TLS session in between: `open` connects and then
    /// performs the handshake, `send` and `recv` go through OpenSSL, and `recv` is checked.
    // nonisolated(unsafe): allocated and filled once by the lazy initialiser, never written again.
    nonisolated(unsafe) private static let tlsClass: UnsafePointer<camqp_socket_class> = {
        let table = UnsafeMutablePointer<camqp_socket_class>.allocate(capacity: 1)
        table.initialize(to: tcpClass.pointee)
        table.pointee.open = { base, host, port, timeout in
            let status = SocketBridge.tcpClass.pointee.open(base, host, port, timeout)
            guard status == AMQP_STATUS_OK.rawValue else { return status }
            guard let bridge = current, let session = bridge.tls else { return AMQP_STATUS_SSL_ERROR.rawValue }
            let socket = SocketBridge.tcpClass.pointee.get_sockfd(base)
            bridge.socketOpened(socket)
            let limit = timeout.map { Duration.seconds($0.pointee.tv_sec) + .microseconds($0.pointee.tv_usec) }
            let deadline = ContinuousClock.now + (limit ?? .seconds(60))
            return session.handshake(socket: socket, deadline: deadline)
                ? AMQP_STATUS_OK.rawValue : AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue
        }
        table.pointee.send = { _, buffer, length, _ in
            guard let session = current?.tls else { return Int(AMQP_STATUS_SSL_ERROR.rawValue) }
            switch session.write(UnsafeRawBufferPointer(start: buffer, count: length)) {
            case .transferred(let count): return count
            case .wouldBlock(let needsRead): return needsRead ? needRead : needWrite
            case .closed: return Int(AMQP_STATUS_CONNECTION_CLOSED.rawValue)
            case .failed: return Int(AMQP_STATUS_SSL_ERROR.rawValue)
            }
        }
        table.pointee.recv = { _, buffer, length, _ in
            if hasFailed { return badData }
            guard let session = current?.tls else { return Int(AMQP_STATUS_SSL_ERROR.rawValue) }
            switch session.read(into: UnsafeMutableRawBufferPointer(start: buffer, count: length)) {
            case .transferred(let count): return checked(count, buffer)
            case .wouldBlock(let needsRead): return needsRead ? needRead : needWrite
            case .closed: return Int(AMQP_STATUS_CONNECTION_CLOSED.rawValue)
            case .failed: return Int(AMQP_STATUS_SSL_ERROR.rawValue)
            }
        }
        return UnsafePointer(table)
    }()
}
