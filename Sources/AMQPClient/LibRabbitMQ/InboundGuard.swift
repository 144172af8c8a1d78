#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ

/// Puts an ``InboundFrameScanner`` between the socket and librabbitmq: every byte a
/// connection receives is checked, in order, before librabbitmq parses it. A violation makes
/// the read fail, and ``LibRabbitMQConnection/nextFrame(timeout:)`` reports it.
///
/// It works by giving the connection's librabbitmq socket a class table of its own (the
/// socket's first field; see `camqp_socket_class` in the shim) whose `recv` calls
/// librabbitmq's and then the scanner. The guard in charge is found through a thread-specific
/// slot: a connection is only ever read by its I/O thread, which installs its guard.
final class InboundGuard {
    private var scanner: InboundFrameScanner
    /// Whether a channel number is one the client opened and has not seen closed.
    var isChannelOpen: (UInt16) -> Bool = { _ in false }
    /// The first violation found; reads fail from then on.
    private(set) var violation: ProtocolViolation?

    init(limits: InboundFrameScanner.Limits) {
        scanner = InboundFrameScanner(limits: limits)
    }

    var limits: InboundFrameScanner.Limits {
        get { scanner.limits }
        set { scanner.limits = newValue }
    }

    /// Guards `socket` (a librabbitmq TCP socket) for reads made on the calling thread.
    func install(on socket: OpaquePointer) {
        let header = UnsafeMutableRawPointer(socket).assumingMemoryBound(to: camqp_socket_header.self)
        header.pointee.klass = Self.guardedClass
        makeCurrent()
    }

    /// The calling thread's reads are checked by this guard from now on.
    func makeCurrent() {
        pthread_setspecific(Self.currentKey, Unmanaged.passUnretained(self).toOpaque())
    }

    /// No guard for the calling thread's reads (its connection is gone).
    func resignCurrent() {
        if pthread_getspecific(Self.currentKey) == Unmanaged.passUnretained(self).toOpaque() {
            pthread_setspecific(Self.currentKey, nil)
        }
    }

    /// Checks bytes just received. Returns whether they may go on to librabbitmq.
    fileprivate func inspect(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard violation == nil else { return false }
        violation = scanner.scan(bytes, isOpen: isChannelOpen)
        return violation == nil
    }

    // MARK: The socket class

    /// Finds the guard of the calling thread.
    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "could not create a thread-specific key")
        return key
    }()

    /// librabbitmq's own TCP socket class, read from a socket made for the purpose.
    // nonisolated(unsafe): written once by the lazy initialiser, then only read; the table it
    // points to is a constant inside librabbitmq.
    nonisolated(unsafe) private static let tcpClass: UnsafePointer<camqp_socket_class> = {
        let state = amqp_new_connection()!
        defer { amqp_destroy_connection(state) }
        let socket = amqp_tcp_socket_new(state)!
        return UnsafeMutableRawPointer(socket).assumingMemoryBound(to: camqp_socket_header.self).pointee.klass
    }()

    /// librabbitmq's TCP class with `recv` checked by the current guard.
    // nonisolated(unsafe): allocated and filled once by the lazy initialiser, never written again.
    nonisolated(unsafe) private static let guardedClass: UnsafePointer<camqp_socket_class> = {
        let table = UnsafeMutablePointer<camqp_socket_class>.allocate(capacity: 1)
        table.initialize(to: tcpClass.pointee)
        table.pointee.recv = { base, buffer, length, flags in
            let received = InboundGuard.tcpClass.pointee.recv(base, buffer, length, flags)
            guard received > 0 else { return received }
            // A read on a thread with no guard is refused rather than let through unchecked.
            guard let current = pthread_getspecific(InboundGuard.currentKey) else {
                return Int(AMQP_STATUS_BAD_AMQP_DATA.rawValue)
            }
            let inboundGuard = Unmanaged<InboundGuard>.fromOpaque(current).takeUnretainedValue()
            let accepted = inboundGuard.inspect(UnsafeRawBufferPointer(start: buffer, count: received))
            return accepted ? received : Int(AMQP_STATUS_BAD_AMQP_DATA.rawValue)
        }
        return UnsafePointer(table)
    }()
}
