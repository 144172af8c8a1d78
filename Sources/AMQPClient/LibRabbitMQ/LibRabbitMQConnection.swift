#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ

/// The one owner of a librabbitmq connection (`amqp_connection_state_t`): it opens the socket
/// and logs in, reads the next frame, writes encoded frames, and frees the connection. Every
/// librabbitmq status it meets becomes an ``AMQPError`` here.
///
/// librabbitmq is not thread-safe: an instance is used only by its connection's I/O thread
/// (``IOLoop``), which also keeps calling ``nextFrame(timeout:)`` so that heartbeats go out.
final class LibRabbitMQConnection {
    private var state: amqp_connection_state_t?
    /// Checks every byte received before librabbitmq parses it, and carries TLS.
    let bridge: SocketBridge
    /// Outgoing frames, written to the socket once per batch by ``flush(limits:)``.
    private let writer = FrameWriter()
    /// Negotiated with the broker during login.
    let channelMax: UInt16
    let heartbeatSeconds: Int32
    let frameMax: Int
    /// What the broker said about itself in `connection.start` (product, version, capabilities).
    let serverProperties: AMQPFieldTable
    /// Recent consumer tags, routing keys, content types…: received frames reuse them.
    private var repeatedStrings = RepeatedStrings()

    private init(
        state: amqp_connection_state_t, bridge: SocketBridge, serverProperties: AMQPFieldTable
    ) {
        self.state = state
        self.bridge = bridge
        let channelMax = UInt16(clamping: amqp_get_channel_max(state))
        self.channelMax = channelMax == 0 ? .max : channelMax
        self.heartbeatSeconds = amqp_get_heartbeat(state)
        let frameMax = Int(amqp_get_frame_max(state))
        self.frameMax = frameMax > 0 ? frameMax : Int(AMQP_DEFAULT_FRAME_SIZE)
        writer.frameMax = self.frameMax
        bridge.limits.frameMax = self.frameMax
        self.serverProperties = serverProperties
    }

    deinit {
        close()
    }

    // MARK: Opening

    /// Connects to `endpoint` and logs in by `deadline` (TCP, TLS and login together).
    /// `blockingOn` is told the socket once it is connected, and `nil` before a failed attempt
    /// closes it: until then, shutting it down makes the attempt fail at once.
    static func open(
        _ endpoint: AMQPConnection.Configuration.Endpoint,
        configuration: AMQPConnection.Configuration,
        clientProperties: AMQPFieldTable,
        deadline: ContinuousClock.Instant,
        blockingOn: @escaping (Int32?) -> Void
    ) throws(AMQPError) -> LibRabbitMQConnection {
        try LibraryVersion.linked.checkBridgeable()
        guard let state = amqp_new_connection() else {
            throw AMQPError(code: .library, message: "librabbitmq could not allocate a connection")
        }
        guard let socket = amqp_tcp_socket_new(state) else {
            amqp_destroy_connection(state)
            throw AMQPError(code: .library, message: "librabbitmq could not allocate a socket")
        }
        let tls: TLSSession?
        do {
            tls = try configuration.tls.map { settings throws(AMQPError) in try TLSSession(settings: settings, host: endpoint.host) }
        } catch {
            amqp_destroy_connection(state)
            throw error
        }
        let bridge = SocketBridge(
            limits: .init(frameMax: Int(configuration.frameMax), maximumMessageSize: UInt64(configuration.maximumMessageSize)),
            tls: tls)
        bridge.socketOpened = { socket in
            camqp_socket_no_sigpipe(socket)  // Darwin: its sends cannot say MSG_NOSIGNAL
            blockingOn(socket)
        }
        bridge.install(on: socket)
        func fail(_ error: AMQPError) -> AMQPError {
            blockingOn(nil)
            amqp_destroy_connection(state)
            bridge.uninstall()
            return bridge.violation.map { .protocolViolation($0) } ?? error
        }
        // For TLS, opening the socket includes the handshake and its verification: a broker
        // that fails it never sees a credential.
        func remaining() -> timeval { timeval(max(.milliseconds(1), ContinuousClock.now.duration(to: deadline))) }
        var timeout = remaining()
        let status = LibraryStatus(amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout))
        guard status.isOK else { throw fail(tls?.failure ?? .connectFailed(status, endpoint)) }
        // librabbitmq's login has one deadline: what is left of ours.
        timeout = remaining()
        _ = amqp_set_handshake_timeout(state, &timeout)

        let pool = CPool()
        var properties = pool.table(clientProperties)
        let heartbeat = Int32(clamping: configuration.heartbeat.components.seconds)
        let channelMax = Int32(configuration.channelMax)
        let frameMax = Int32(bitPattern: configuration.frameMax)
        let reply =
            switch configuration.authentication {
            case .plain:
                camqp_login_plain(
                    state, configuration.virtualHost, channelMax, frameMax, heartbeat, &properties,
                    configuration.username, configuration.password)
            case .external:
                // RabbitMQ takes the user from the certificate and ignores the identity sent;
                // librabbitmq 0.11 fails to copy an empty one.
                camqp_login_external(
                    state, configuration.virtualHost, channelMax, frameMax, heartbeat, &properties,
                    configuration.username.isEmpty ? "certificate" : configuration.username)
            }
        if let error = AMQPError.loginFailure(reply, configuration) { throw fail(error) }
        // A frame_max under 4096 (which AMQP forbids) would leave no room for a body in a frame.
        guard amqp_get_frame_max(state) >= 4096 else {
            throw fail(
                .protocolViolation(
                    .frameError("the broker negotiated a frame_max of \(amqp_get_frame_max(state)), under AMQP's minimum of 4096")))
        }
        // Checked by the frame scanner (depth, size) before librabbitmq decoded it, and again here.
        let serverProperties: AMQPFieldTable
        do {
            serverProperties = try amqp_get_server_properties(state).map { table throws(ProtocolViolation) in
                try CDecoding.table(table.pointee)
            } ?? [:]
        } catch {
            throw fail(.protocolViolation(error))
        }
        return LibRabbitMQConnection(state: state, bridge: bridge, serverProperties: serverProperties)
    }

    // MARK: Reading

    /// The socket, for `poll`; -1 once librabbitmq has closed it.
    var socket: Int32 {
        guard let state else { return -1 }
        return amqp_get_sockfd(state)
    }

    /// Whether librabbitmq (or OpenSSL) holds frames or bytes already read: `poll` would not see
    /// them. Also while a protocol violation waits to be reported by the next read (the frames
    /// before it were handed over first).
    var hasBufferedInput: Bool {
        guard let state else { return false }
        return amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0 || bridge.tls?.hasBufferedInput == true
            || bridge.violation != nil
    }

    /// Where the client's own writes go.
    var transport: Transport {
        if let tls = bridge.tls { return .tls(tls, socket: socket) }
        return .plain(socket: socket)
    }

    /// What ``nextFrame(timeout:)`` found: it borrows the connection (see ``ReceivedFrame``).
    enum FrameRead: ~Escapable {
        case frame(ReceivedFrame)
        /// Nothing arrived within the timeout.
        case timedOut
        /// The connection failed; it cannot be used any more.
        case failed(AMQPError)
    }

    /// Reads the next frame, waiting up to `timeout` (`.zero` only takes what is buffered or
    /// readable now). Sends a heartbeat when one is due and notices a silent broker: call it at
    /// least every quarter heartbeat interval. A body frame points into librabbitmq's memory,
    /// valid until ``releaseBuffers(channel:)`` for its channel.
    @_lifetime(borrow self)
    func nextFrame(timeout: Duration) -> FrameRead {
        guard let state else { return .failed(.connectionLost(.socketClosed)) }
        var frame = amqp_frame_t()
        // Most reads take what is ready (`.zero`): no need to convert a Duration for those.
        var wait = timeout == .zero ? timeval(tv_sec: 0, tv_usec: 0) : timeval(timeout)
        let status = LibraryStatus(amqp_simple_wait_frame_noblock(state, &frame, &wait))
        if status == .timeout { return .timedOut }
        guard status.isOK else {
            return .failed(bridge.violation.map { .protocolViolation($0) } ?? .connectionLost(status))
        }
        return _overrideLifetime(.frame(ReceivedFrame.borrowing(frame, reusing: &repeatedStrings)), borrowing: self)
    }

    /// A content header's `basic` properties (see ``ContentHeader/properties(reusing:)``).
    func properties(of header: borrowing ContentHeader) -> (properties: AMQPProperties, footprint: Int)? {
        header.properties(reusing: &repeatedStrings)
    }

    /// Frees the memory of the frames read on `channel` since the last release.
    func releaseBuffers(channel: UInt16) {
        guard let state else { return }
        amqp_maybe_release_buffers_on_channel(state, channel)
    }

    // MARK: Writing

    /// Whether encoded frames wait for ``flush(limits:)``.
    var hasPendingOutput: Bool { !writer.isEmpty }

    /// Whether enough is buffered that it should be written before more is encoded.
    var shouldFlush: Bool { writer.count >= FrameWriter.flushThreshold }

    /// Encodes a method frame into the outgoing buffer. A method that cannot be encoded fails
    /// the connection, as a failed write would.
    func append(_ method: ClientMethod, channel: UInt16) throws(AMQPError) {
        let status = writer.append(method, channel: channel)
        guard status.isOK else { throw .connectionLost(status) }
    }

    /// Encodes a heartbeat frame into the outgoing buffer (librabbitmq sends them itself only
    /// while it reads).
    func appendHeartbeat() {
        writer.appendHeartbeat()
    }

    /// Encodes a publish (method, content header, body frames) into the outgoing buffer; a
    /// message that cannot be encoded leaves nothing behind.
    func appendPublish(_ request: PublishRequest, channel: UInt16) throws(AMQPError) {
        let status = writer.appendPublish(request, channel: channel)
        guard status.isOK else { throw .unencodable(status) }
    }

    /// Writes the outgoing buffer to the socket. A write that makes no progress for
    /// ``FrameWriter/WriteLimits/stall`` means the broker stopped reading.
    func flush(limits: FrameWriter.WriteLimits) throws(AMQPError) {
        guard !writer.isEmpty else { return }
        let status = socket < 0 ? LibraryStatus.socketClosed : writer.flush(to: transport, limits: limits)
        guard status.isOK else {
            writer.discard()
            throw Self.writeFailure(status, limits: limits)
        }
    }

    /// Writes what a direct publish left (see ``DirectPublisher``), before anything else goes out.
    func flushRemainder(of directPublisher: DirectPublisher, limits: FrameWriter.WriteLimits) throws(AMQPError) {
        let status = directPublisher.flushRemainder(to: transport, limits: limits)
        guard status.isOK else { throw Self.writeFailure(status, limits: limits) }
    }

    private static func writeFailure(_ status: LibraryStatus, limits: FrameWriter.WriteLimits) -> AMQPError {
        if status == .timeout { return .stalledWrite(limits.stall) }
        return .connectionLost(status)
    }

    // MARK: Closing

    /// Drops the socket and frees librabbitmq's state, without a `connection.close` handshake
    /// (the I/O thread does that itself, without blocking). Idempotent.
    func close() {
        writer.discard()
        if let state {
            bridge.tls?.shutdown()  // TLS's close notification, best effort
            amqp_destroy_connection(state)
            self.state = nil
            bridge.uninstall()
        }
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: .init(seconds), tv_usec: .init(attoseconds / 1_000_000_000_000))
    }
}
