#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ
import DequeModule
import Logging

/// Owns one `amqp_connection_state_t` and is the only code that touches it, on a
/// dedicated thread: librabbitmq is not thread-safe and sends heartbeats only while
/// it is called, so one thread runs commands, reads every frame, and keeps the
/// heartbeat going whether the application is idle or busy. No Swift concurrency
/// thread ever blocks on the socket.
///
/// The loop never uses librabbitmq's blocking RPC helpers: it sends methods and
/// matches replies itself, so a slow reply on one channel never stalls another.
final class IOLoop {
    private let core: ConnectionCore
    private var logger: Logger
    private var connection: amqp_connection_state_t?
    private let pool = CPool()
    private var channels: [UInt16: ChannelIO] = [:]
    private var nextEpoch: UInt32 = 0
    private var channelMax: UInt16 = 0
    private var heartbeatSeconds: Int32 = 0
    private var batch: Deque<Command> = []
    private var closeDeadline: ContinuousClock.Instant?
    private var finished = false
    private var startContinuation: CheckedContinuation<Void, any Error>?

    private init(core: ConnectionCore) {
        self.core = core
        self.logger = core.logger
        logger[metadataKey: "amqp.endpoint"] = "\(core.configuration.host):\(core.configuration.port)"
    }

    /// Starts the I/O thread and returns once the connection is open (or throws why it could not be).
    static func start(core: ConnectionCore) async throws(AMQPError) {
        let loop = IOLoop(core: core)
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                loop.startContinuation = continuation
                let unmanaged = Unmanaged.passRetained(loop)
                if let error = startThread(unmanaged.toOpaque()) {
                    unmanaged.release()
                    continuation.resume(throwing: error)
                }
            }
        } catch {
            throw AMQPError.wrap(error)
        }
    }

    private static func startThread(_ context: UnsafeMutableRawPointer) -> AMQPError? {
        #if canImport(Glibc)
        var thread = pthread_t()
        #else
        var thread: pthread_t? = nil
        #endif
        let status = pthread_create(
            &thread, nil,
            { context in
                let loop = Unmanaged<IOLoop>.fromOpaque(context!).takeRetainedValue()
                loop.threadMain()
                return nil
            }, context)
        guard status == 0 else {
            return AMQPError(code: .library, message: "could not start the connection's I/O thread (error \(status))")
        }
        #if canImport(Glibc)
        pthread_detach(thread)
        #else
        pthread_detach(thread!)
        #endif
        return nil
    }

    private func threadMain() {
        do {
            try open()
        } catch {
            for command in core.finish(error: error, byApplication: false) { command.fail(error) }
            startContinuation?.resume(throwing: error)
            startContinuation = nil
            return
        }
        startContinuation?.resume()
        startContinuation = nil
        runLoop()
    }

    // MARK: Opening

    private func open() throws(AMQPError) {
        let configuration = core.configuration
        guard let connection = amqp_new_connection() else {
            throw AMQPError(code: .library, message: "librabbitmq could not allocate a connection")
        }
        self.connection = connection
        guard let socket = amqp_tcp_socket_new(connection) else {
            destroyConnection()
            throw AMQPError(code: .library, message: "librabbitmq could not allocate a socket")
        }

        var timeout = timeval(configuration.connectTimeout)
        let status = amqp_socket_open_noblock(socket, configuration.host, Int32(configuration.port), &timeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            destroyConnection()
            throw Self.connectError(status, configuration)
        }

        _ = amqp_set_handshake_timeout(connection, &timeout)
        var properties = clientProperties()
        let heartbeat = Int32(clamping: configuration.heartbeat.components.seconds)
        let reply = camqp_login_plain(
            connection, configuration.virtualHost, Int32(configuration.channelMax), Int32(bitPattern: configuration.frameMax),
            heartbeat, &properties, configuration.username, configuration.password)
        pool.recycle()
        if let error = Self.loginError(reply, configuration) {
            destroyConnection()
            throw error
        }
        channelMax = UInt16(clamping: amqp_get_channel_max(connection))
        if channelMax == 0 { channelMax = UInt16.max }
        heartbeatSeconds = amqp_get_heartbeat(connection)
        logger.debug(
            "AMQP connection open",
            metadata: [
                "amqp.heartbeat": "\(heartbeatSeconds)", "amqp.frame_max": "\(amqp_get_frame_max(connection))",
                "amqp.channel_max": "\(channelMax)",
            ])
    }

    private func clientProperties() -> amqp_table_t {
        var capabilities: AMQPFieldTable = [:]
        for capability in [
            "publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
            "connection.blocked", "authentication_failure_close",
        ] {
            capabilities[capability] = .bool(true)
        }
        var properties: AMQPFieldTable = [
            "product": .string(AMQPClientInfo.product),
            "version": .string(AMQPClientInfo.version),
            "platform": .string(AMQPClientInfo.platform),
            "information": .string("Swift client for RabbitMQ, built on librabbitmq"),
            "capabilities": .table(capabilities),
        ]
        if let name = core.configuration.connectionName {
            properties["connection_name"] = .string(name)
        }
        return pool.table(properties)
    }

    private static func connectError(_ status: Int32, _ configuration: AMQPConnection.Configuration) -> AMQPError {
        let target = "\(configuration.host):\(configuration.port)"
        switch status {
        case AMQP_STATUS_TIMEOUT.rawValue:
            return AMQPError(code: .connectTimeout, message: "timed out connecting to \(target)", libraryStatus: status)
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue:
            return AMQPError(
                code: .connectionFailed, message: "could not resolve host \(configuration.host)", libraryStatus: status)
        default:
            return AMQPError(
                code: .connectionFailed,
                message: "could not connect to \(target): \(libraryMessage(status)) (is the broker running?)",
                libraryStatus: status)
        }
    }

    private static func loginError(_ reply: amqp_rpc_reply_t, _ configuration: AMQPConnection.Configuration)
        -> AMQPError?
    {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return nil
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            let close = reply.reply.decoded!.load(as: amqp_connection_close_t.self)
            let text = CDecoding.string(close.reply_text)
            switch close.reply_code {
            case 403:
                return AMQPError(
                    code: .authenticationFailed,
                    message: "the broker refused the credentials of user \"\(configuration.username)\"",
                    replyCode: 403, replyText: text)
            case 530:
                return AMQPError(
                    code: .accessRefused,
                    message: "user \"\(configuration.username)\" may not use virtual host \"\(configuration.virtualHost)\"",
                    replyCode: 530, replyText: text)
            default:
                return AMQPError(
                    code: .connectionClosed, message: "the broker closed the connection during login",
                    replyCode: close.reply_code, replyText: text)
            }
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let status = reply.library_error
            switch status {
            case AMQP_STATUS_TIMEOUT.rawValue:
                return AMQPError(
                    code: .connectTimeout, message: "the AMQP handshake did not finish in time", libraryStatus: status)
            case AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_CLOSED.rawValue:
                // Brokers that do not honour authentication_failure_close just drop the socket.
                return AMQPError(
                    code: .authenticationFailed,
                    message: "the broker closed the connection during login (wrong credentials or virtual host?)",
                    libraryStatus: status)
            default:
                return AMQPError(
                    code: .library, message: "login failed: \(libraryMessage(status))", libraryStatus: status)
            }
        default:
            return AMQPError(code: .library, message: "login failed with an unexpected reply")
        }
    }

    static func libraryMessage(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    // MARK: The loop

    private func runLoop() {
        while !finished {
            runCommands()
            if finished { break }
            readFrames()
            if finished { break }
            checkCloseDeadline()
            if finished { break }
            waitForWork()
        }
    }

    private func runCommands() {
        core.takeCommands(into: &batch)
        if !blocked && !held.isEmpty { releaseHeld() }
        guard !batch.isEmpty else { return }
        // Let the kernel pack the batch's frames into as few segments as it can.
        let cork = batch.count > 1
        if cork { setCork(true) }
        // popFirst moves each command out: no copy of its strings, properties and body.
        while let command = batch.popFirst() {
            if finished {
                command.fail(finalError ?? .connectionClosedByApplication)
                continue
            }
            if blocked && mustHold(command) {
                hold(command)
                continue
            }
            run(command)
        }
        if blocked { core.setHeldPublishBytes(heldPublishBytes) }
        flushDeferredAcks()
        if cork { setCork(false) }
        batch.removeAll(keepingCapacity: true)
    }

    // MARK: Blocked connections

    /// The broker blocked publishing (a memory or disk alarm). It stops reading the socket at
    /// the next publish it receives, so publishes are held back here instead: acks, consumers
    /// and other channels keep working, and nothing wedges the connection's reading.
    private var blocked = false
    /// Held commands, in order: publishes, and what follows a held publish on its channel.
    private var held: Deque<Command> = []
    private var channelsWithHeldCommands: Set<UInt16> = []
    private var heldPublishBytes = 0

    private func mustHold(_ command: Command) -> Bool {
        switch command {
        case .publish: true
        case .call(let ref, _, _), .consume(let ref, _, _, _), .stopConsumer(let ref, _, _, _), .closeChannel(let ref, _):
            channelsWithHeldCommands.contains(ref.id)
        case .send, .openChannel, .closeConnection: false  // settlements never wait
        }
    }

    private func hold(_ command: Command) {
        if case .publish(let ref, let request) = command {
            channelsWithHeldCommands.insert(ref.id)
            heldPublishBytes += ConnectionCore.publishCost(request)
        }
        held.append(command)
    }

    /// Puts the held commands back in front of the new ones, in their original order.
    private func releaseHeld() {
        held.append(contentsOf: batch)
        batch = held
        held = []
        channelsWithHeldCommands.removeAll()
        heldPublishBytes = 0
        core.setHeldPublishBytes(0)
    }

    private func failHeld(_ error: AMQPError) {
        let commands = held
        held = []
        channelsWithHeldCommands.removeAll()
        heldPublishBytes = 0
        for command in commands { command.fail(error) }
    }

    private func setCork(_ on: Bool) {
        #if os(Linux)
        guard let connection, !finished else { return }
        let socket = amqp_get_sockfd(connection)
        guard socket >= 0 else { return }
        var value: Int32 = on ? 1 : 0
        let tcpCork: Int32 = 3  // TCP_CORK in <netinet/tcp.h>, which Glibc's module does not export
        _ = setsockopt(socket, Int32(IPPROTO_TCP), tcpCork, &value, socklen_t(MemoryLayout<Int32>.size))
        #endif
    }

    // MARK: Settling deliveries

    private var channelsWithDeferredAck: [ChannelIO] = []

    /// Sends an ack, nack or reject and records the settlement. A plain ack that leaves every
    /// earlier delivery settled is held back instead, so a run of in-order acks costs one write.
    private func settleAndSend(_ method: ClientMethod, on channel: ChannelIO) {
        switch method {
        case .basicAck(let tag, let multiple):
            channel.unsettled.settle(tag, multiple: multiple)
            if channel.unsettled.allSettled(upTo: tag) {
                if channel.deferredAck == nil { channelsWithDeferredAck.append(channel) }
                channel.deferredAck = max(channel.deferredAck ?? 0, tag)
                return
            }
        case .basicNack(let tag, let multiple, _):
            // A multiple nack must not reach deliveries that were acked but not yet sent.
            flushDeferredAcks()
            channel.unsettled.settle(tag, multiple: multiple)
        case .basicReject(let tag, _):
            flushDeferredAcks()
            channel.unsettled.settle(tag, multiple: false)
        default:
            flushDeferredAcks()
        }
        send(method, on: channel.id)
    }

    private func flushDeferredAcks() {
        guard !channelsWithDeferredAck.isEmpty else { return }
        let deferred = channelsWithDeferredAck
        channelsWithDeferredAck.removeAll(keepingCapacity: true)
        for channel in deferred {
            guard let tag = channel.deferredAck else { continue }
            channel.deferredAck = nil
            if channels[channel.id] === channel, channel.state == .open {
                send(.basicAck(deliveryTag: tag, multiple: true), on: channel.id)
            }
        }
    }

    /// At most this many frames are handled before queued commands (acks, publishes) get a turn.
    private static let frameBudget = 256

    /// Consumers whose waiting iterator gets its deliveries once the current batch is read.
    private var streamsToWake: [ConsumerStream] = []

    private func readFrames() {
        guard let connection else { return }
        defer {
            for stream in streamsToWake { stream.wake() }
            streamsToWake.removeAll(keepingCapacity: true)
        }
        var frame = amqp_frame_t()
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        for _ in 0..<Self.frameBudget {
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return }
            guard status == AMQP_STATUS_OK.rawValue else {
                connectionLost(status)
                return
            }
            handle(frame)
            if finished { return }
            amqp_maybe_release_buffers_on_channel(connection, frame.channel)
        }
    }

    private func waitForWork() {
        guard let connection else { return }
        if amqp_frames_enqueued(connection) != 0 || amqp_data_in_buffer(connection) != 0 { return }
        if !blocked && !held.isEmpty { return }  // unblocked: release the held publishes first
        guard core.prepareToSleep() else { return }
        let socket = amqp_get_sockfd(connection)
        guard socket >= 0 else {
            core.didWake()
            connectionLost(AMQP_STATUS_SOCKET_CLOSED.rawValue)
            return
        }
        var fds = [
            pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
            pollfd(fd: core.wakeFileDescriptor, events: Int16(POLLIN), revents: 0),
        ]
        _ = poll(&fds, 2, pollTimeoutMilliseconds())
        core.didWake()
    }

    /// Wakes in time to send a heartbeat (librabbitmq sends one only when called) and to
    /// notice a close that took too long.
    private func pollTimeoutMilliseconds() -> Int32 {
        var timeout: Int64 = heartbeatSeconds > 0 ? Int64(heartbeatSeconds) * 250 : 5_000
        if let closeDeadline {
            let remaining = ContinuousClock.now.duration(to: closeDeadline)
            timeout = min(timeout, max(0, remaining.milliseconds + 1))
        }
        return Int32(timeout)
    }

    private func checkCloseDeadline() {
        guard let closeDeadline, ContinuousClock.now >= closeDeadline else { return }
        if closingConnection {
            logger.warning("the broker did not confirm connection.close in time; dropping the socket")
            tearDown(.connectionClosedByApplication, byApplication: true)
            return
        }
        self.closeDeadline = nil
        for channel in channels.values where channel.state == .closing {
            if let deadline = channel.closeDeadline, ContinuousClock.now >= deadline {
                // The channel number stays reserved: the broker may still answer late.
                channel.closeDeadline = nil
                channel.failPending(
                    AMQPError(code: .channelClosed, message: "the broker did not confirm channel.close in time"))
            } else if let deadline = channel.closeDeadline {
                self.closeDeadline = min(self.closeDeadline ?? deadline, deadline)
            }
        }
    }

    // MARK: Commands

    private var closingConnection = false
    private var finalError: AMQPError?

    private func run(_ command: Command) {
        if case .send = command {} else { flushDeferredAcks() }
        switch command {
        case .publish(let ref, let request):
            guard let channel = openChannel(ref) else {
                request.confirm?.fail(closedError(ref))
                return
            }
            publish(request, on: channel)
        case .send(let ref, let method):
            guard let channel = openChannel(ref) else { return }
            settleAndSend(method, on: channel)
        case .call(let ref, let method, let continuation):
            guard let channel = openChannel(ref) else {
                continuation.resume(throwing: closedError(ref))
                return
            }
            var reply = PendingReply(replies: method.replies, continuation: continuation)
            if case .basicGet(_, noAck: false) = method { reply.tracksDelivery = true }
            if case .confirmSelect = method { channel.confirmMode = true }
            channel.pending.append(reply)
            send(method, on: channel.id)
        case .consume(let ref, let method, let stream, let continuation):
            guard let channel = openChannel(ref) else {
                let error = closedError(ref)
                stream.finish(error)
                continuation.resume(throwing: error)
                return
            }
            channel.consumers[stream.consumerTag] = stream
            channel.pending.append(PendingReply(replies: method.replies, continuation: continuation))
            send(method, on: channel.id)
        case .stopConsumer(let ref, let stream, let requeue, let continuation):
            guard let channel = openChannel(ref), channel.consumers[stream.consumerTag] === stream else {
                stream.finish(nil)
                continuation?.resume(returning: .ok(AMQP_BASIC_CANCEL_OK_METHOD))
                return
            }
            channel.pending.append(PendingReply(replies: [AMQP_BASIC_CANCEL_OK_METHOD], continuation: continuation))
            send(.basicCancel(consumerTag: stream.consumerTag), on: channel.id)
            for deliveryTag in requeue {
                settleAndSend(.basicReject(deliveryTag: deliveryTag, requeue: true), on: channel)
            }
        case .openChannel(let continuation):
            openNewChannel(continuation)
        case .closeChannel(let ref, let continuation):
            guard let channel = openChannel(ref) else {
                continuation.resume(returning: .ok(AMQP_CHANNEL_CLOSE_OK_METHOD))
                return
            }
            channel.state = .closing
            channel.handle.markClosed(.channelClosedByApplication(channel.id))
            channel.pending.append(PendingReply(replies: [AMQP_CHANNEL_CLOSE_OK_METHOD], continuation: continuation))
            let deadline = ContinuousClock.now + core.configuration.closeTimeout
            channel.closeDeadline = deadline
            closeDeadline = min(closeDeadline ?? deadline, deadline)
            send(.channelClose(replyCode: 200, replyText: "Goodbye"), on: channel.id)
        case .closeConnection:
            guard !closingConnection else { return }
            closingConnection = true
            failHeld(.connectionClosedByApplication)
            closeDeadline = ContinuousClock.now + core.configuration.closeTimeout
            send(.connectionClose(replyCode: 200, replyText: "Goodbye"), on: 0)
        }
    }

    private func openChannel(_ ref: ChannelRef) -> ChannelIO? {
        guard let channel = channels[ref.id], channel.epoch == ref.epoch, channel.state == .open else { return nil }
        return channel
    }

    /// Why each closed channel number last closed: a command already queued when the broker
    /// closed its channel fails with the broker's reason, not a generic one.
    private var closeReasons: [UInt16: (epoch: UInt32, error: AMQPError)] = [:]

    private func closedError(_ ref: ChannelRef) -> AMQPError {
        if let channel = channels[ref.id], channel.epoch == ref.epoch, let error = channel.handle.closedError {
            return error
        }
        if let reason = closeReasons[ref.id], reason.epoch == ref.epoch { return reason.error }
        return AMQPError(code: .channelClosed, message: "channel \(ref.id) is closed")
    }

    private func openNewChannel(_ continuation: CheckedContinuation<AMQPChannel, any Error>) {
        guard let id = freeChannelID() else {
            continuation.resume(
                throwing: AMQPError(
                    code: .invalidArgument, message: "all \(channelMax) channels of this connection are in use"))
            return
        }
        nextEpoch &+= 1
        let handle = AMQPChannel(core: core, ref: ChannelRef(id: id, epoch: nextEpoch))
        let channel = ChannelIO(handle: handle)
        channels[id] = channel
        channel.pending.append(PendingReply(replies: [AMQP_CHANNEL_OPEN_OK_METHOD]) { result in
            switch result {
            case .success: continuation.resume(returning: handle)
            case .failure(let error): continuation.resume(throwing: error)
            }
        })
        channel.state = .open
        send(.channelOpen, on: id)
    }

    private func freeChannelID() -> UInt16? {
        var id: UInt16 = 1
        while id <= channelMax {
            if channels[id] == nil { return id }
            id += 1
        }
        return nil
    }

    private func send(_ method: ClientMethod, on channel: UInt16) {
        guard let connection else { return }
        let status = method.encodeAndSend(connection, channel: channel, pool: pool)
        pool.recycle()
        if status != AMQP_STATUS_OK.rawValue { connectionLost(status) }
    }

    private func publish(_ request: PublishRequest, on channel: ChannelIO) {
        guard let connection else { return }
        let channelID = channel.id
        var properties = pool.properties(request.properties)
        var exchange = request.exchange
        var routingKey = request.routingKey
        let status = exchange.withUTF8 { exchange in
            routingKey.withUTF8 { routingKey in
                request.body.withUnsafeBytes { body in
                    amqp_basic_publish(
                        connection, channelID, Self.bytes(exchange), Self.bytes(routingKey),
                        request.mandatory ? 1 : 0, 0, &properties,
                        amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
                }
            }
        }
        pool.recycle()
        guard status == AMQP_STATUS_OK.rawValue else {
            request.confirm?.fail(
                AMQPError(code: .outcomeUnknown, message: "the connection failed while the message was being sent"))
            connectionLost(status)
            return
        }
        channel.published(request)
    }

    @inline(__always)
    private static func bytes(_ buffer: UnsafeBufferPointer<UInt8>) -> amqp_bytes_t {
        amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
    }

    // MARK: Frames

    private func handle(_ frame: amqp_frame_t) {
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            handleMethod(ServerMethod(frame.payload.method), channel: frame.channel)
        case AMQP_FRAME_HEADER:
            guard let channel = channels[frame.channel], channel.state == .open else { return }
            let header = frame.payload.properties
            let properties = CDecoding.properties(header.decoded!.load(as: amqp_basic_properties_t.self))
            if let delivery = channel.content.header(properties: properties, bodySize: Int(header.body_size)) {
                completed(delivery, on: channel)
            }
        case AMQP_FRAME_BODY:
            guard let channel = channels[frame.channel], channel.state == .open else { return }
            let fragment = frame.payload.body_fragment
            if let delivery = channel.content.body(UnsafeRawBufferPointer(start: fragment.bytes, count: fragment.len)) {
                completed(delivery, on: channel)
            }
        default:
            break
        }
    }

    private func handleMethod(_ method: ServerMethod, channel id: UInt16) {
        if id == 0 {
            handleConnectionMethod(method)
            return
        }
        guard let channel = channels[id] else { return }

        if channel.state == .closing {
            // Only the close handshake matters now; deliveries are requeued by the broker.
            switch method {
            case .ok(AMQP_CHANNEL_CLOSE_OK_METHOD):
                channels[id] = nil
                channel.finish(consumersWith: nil, pendingWith: nil)
            case .channelClose:
                send(.channelCloseOk, on: id)
            default:
                break
            }
            return
        }

        switch method {
        case .deliver(let consumerTag, let deliveryTag, let redelivered, let exchange, let routingKey):
            channel.content.start(
                .delivery(consumerTag: consumerTag), deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey)
        case .getOk(let deliveryTag, let redelivered, let exchange, let routingKey, let messageCount):
            channel.content.start(
                .get(messageCount: messageCount), deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey)
        case .returned(let replyCode, let replyText, let exchange, let routingKey):
            channel.content.start(
                .returned(replyCode: replyCode, replyText: replyText), deliveryTag: 0, redelivered: false,
                exchange: exchange, routingKey: routingKey)
        case .channelClose(let replyCode, let replyText, let classID, let methodID):
            send(.channelCloseOk, on: id)
            channels[id] = nil
            let error = AMQPError.channelClosedByBroker(
                channel: id, replyCode: replyCode, replyText: replyText, classID: classID, methodID: methodID)
            logger.debug("channel closed by the broker", metadata: ["amqp.channel": "\(id)", "amqp.error": "\(error)"])
            channel.handle.markClosed(error)
            closeReasons[id] = (channel.epoch, error)
            channel.finish(consumersWith: error, pendingWith: error)
        case .cancel(let consumerTag, let noWait):
            if let stream = channel.consumers.removeValue(forKey: consumerTag) {
                channel.retire(stream)
                stream.finish(
                    AMQPError(
                        code: .consumerCancelled,
                        message: "the broker cancelled consumer \(consumerTag) (was its queue deleted?)"))
            }
            if !noWait { send(.basicCancelOk(consumerTag: consumerTag), on: id) }
        case .cancelOk(let consumerTag):
            if let stream = channel.consumers.removeValue(forKey: consumerTag) {
                channel.retire(stream)
                stream.finish(nil)
            }
            channel.resolveNext(method)
        case .ack(let deliveryTag, let multiple):
            channel.confirm(deliveryTag, multiple: multiple, acked: true)
        case .nack(let deliveryTag, let multiple, _):
            channel.confirm(deliveryTag, multiple: multiple, acked: false)
        default:
            if !channel.resolveNext(method) {
                logger.debug("unexpected method", metadata: ["amqp.channel": "\(id)", "amqp.method": "\(method)"])
            }
        }
    }

    private func completed(_ content: ContentAssembly.Completed, on channel: ChannelIO) {
        switch content.kind {
        case .delivery(let consumerTag):
            let delivery = content.delivery(channel: channel.handle, consumerTag: consumerTag, messageCount: nil)
            guard let stream = channel.consumers[consumerTag] else {
                // RabbitMQ may still deliver messages a queue sent before it saw the cancel, even
                // after cancel-ok. Give them back rather than leave them unacknowledged.
                if channel.cancelledConsumers[consumerTag] == .manual, !closingConnection {
                    channel.unsettled.delivered(content.deliveryTag)
                    settleAndSend(.basicReject(deliveryTag: content.deliveryTag, requeue: true), on: channel)
                } else {
                    logger.debug("delivery for an unknown consumer", metadata: ["amqp.consumer_tag": "\(consumerTag)"])
                }
                return
            }
            if !stream.noAck { channel.unsettled.delivered(content.deliveryTag) }
            switch stream.push(delivery) {
            case .accepted: break
            case .acceptedNeedsWake: streamsToWake.append(stream)
            case .refused:
                if !stream.noAck && !closingConnection {
                    // The application stopped iterating: give the message back at once.
                    settleAndSend(.basicReject(deliveryTag: content.deliveryTag, requeue: true), on: channel)
                }
            }
        case .get(let messageCount):
            if let get = channel.oldestPending(answeredBy: AMQP_BASIC_GET_OK_METHOD), channel.pending[get].tracksDelivery {
                channel.unsettled.delivered(content.deliveryTag)
            }
            let delivery = content.delivery(channel: channel.handle, consumerTag: nil, messageCount: messageCount)
            channel.resolveNext(.gotDelivery(delivery))
        case .returned(let replyCode, let replyText):
            let error = AMQPError(
                code: .messageReturned,
                message: "the broker returned the message: no queue took it from exchange \"\(content.exchange)\" with routing key \"\(content.routingKey)\"",
                replyCode: replyCode, replyText: replyText)
            if channel.confirmMode,
                channel.returned(exchange: content.exchange, routingKey: content.routingKey, error: error)
            {
                return
            }
            logger.warning(
                "the broker returned an unroutable mandatory message",
                metadata: [
                    "amqp.reply_code": "\(replyCode)", "amqp.reply_text": "\(replyText)",
                    "amqp.exchange": "\(content.exchange)", "amqp.routing_key": "\(content.routingKey)",
                ])
        }
    }

    private func handleConnectionMethod(_ method: ServerMethod) {
        switch method {
        case .connectionClose(let replyCode, let replyText, _, _):
            send(.connectionCloseOk, on: 0)
            let error = AMQPError(
                code: replyCode == 403 ? .accessRefused : .connectionClosed,
                message: "the broker closed the connection", replyCode: replyCode, replyText: replyText)
            logger.warning("connection closed by the broker", metadata: ["amqp.error": "\(error)"])
            tearDown(error, byApplication: closingConnection)
        case .ok(AMQP_CONNECTION_CLOSE_OK_METHOD):
            tearDown(.connectionClosedByApplication, byApplication: true)
        case .connectionBlocked(let reason):
            logger.warning("the broker blocked publishing on this connection", metadata: ["amqp.reason": "\(reason)"])
            blocked = true
            core.setBlocked(reason)
        case .connectionUnblocked:
            logger.info("the broker unblocked publishing on this connection")
            blocked = false
            core.setBlocked(nil)
        default:
            logger.debug("unexpected method on channel 0", metadata: ["amqp.method": "\(method)"])
        }
    }

    // MARK: Ending

    private func connectionLost(_ status: Int32) {
        let error: AMQPError
        if status == AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue {
            error = AMQPError(
                code: .connectionLost, message: "the broker stopped answering heartbeats", libraryStatus: status)
        } else {
            error = AMQPError(
                code: .connectionLost, message: "the connection failed: \(Self.libraryMessage(status))",
                libraryStatus: status)
        }
        if !closingConnection { logger.warning("connection lost", metadata: ["amqp.error": "\(error)"]) }
        tearDown(closingConnection ? .connectionClosedByApplication : error, byApplication: closingConnection)
    }

    /// Fails or ends everything that waits on this connection, frees librabbitmq's state, and
    /// stops the loop. Runs once.
    private func tearDown(_ error: AMQPError, byApplication: Bool) {
        guard !finished else { return }
        finished = true
        finalError = error
        core.refuse(error)
        for channel in channels.values {
            channel.handle.markClosed(error)
            channel.finish(consumersWith: byApplication ? nil : error, pendingWith: error)
        }
        channels.removeAll()
        failHeld(error)
        destroyConnection()
        for command in core.finish(error: error, byApplication: byApplication) { command.fail(error) }
    }

    private func destroyConnection() {
        if let connection {
            amqp_destroy_connection(connection)
            self.connection = nil
        }
    }
}

extension AMQPError {
    static func channelClosedByBroker(
        channel: UInt16, replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16
    ) -> AMQPError {
        var message = "the broker closed channel \(channel)"
        if classID != 0 || methodID != 0 {
            if let name = amqp_method_name(amqp_method_number_t(UInt32(classID) << 16 | UInt32(methodID))) {
                message += " after \(String(cString: name))"
            }
        }
        return AMQPError(
            code: replyCode == 403 ? .accessRefused : .channelClosed, message: message, replyCode: replyCode,
            replyText: replyText)
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: .init(seconds), tv_usec: .init(attoseconds / 1_000_000_000_000))
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
