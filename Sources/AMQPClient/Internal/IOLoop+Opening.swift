#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ
import DequeModule
import Logging

// Connecting and logging in, and what a failure to do so means.

extension IOLoop {
    // MARK: Opening

    /// Connects to the configured endpoints in turn until one accepts. Throws the last one's error.
    func openAnyEndpoint() throws(AMQPError) {
        var lastError: AMQPError?
        for endpoint in core.configuration.endpoints {
            do {
                try open(endpoint)
                return
            } catch {
                if core.configuration.endpoints.count > 1 {
                    logger.debug("could not connect", metadata: ["amqp.endpoint": "\(endpoint)", "amqp.error": "\(error)"])
                }
                lastError = error
            }
        }
        throw lastError!
    }

    func open(_ endpoint: AMQPConnection.Configuration.Endpoint) throws(AMQPError) {
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
        let status = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout)
        guard status == AMQP_STATUS_OK.rawValue else {
            destroyConnection()
            throw Self.connectError(status, endpoint)
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
        let frameMax = Int(amqp_get_frame_max(connection))
        writer.frameMax = frameMax > 0 ? frameMax : Int(AMQP_DEFAULT_FRAME_SIZE)
        writer.discard()
        core.connectionOpened(socket: amqp_get_sockfd(connection), frameMax: writer.frameMax)
        nextHeartbeatService = ContinuousClock.now + heartbeatServiceInterval
        logger[metadataKey: "amqp.endpoint"] = "\(endpoint)"
        logger.debug(
            "AMQP connection open",
            metadata: [
                "amqp.heartbeat": "\(heartbeatSeconds)", "amqp.frame_max": "\(amqp_get_frame_max(connection))",
                "amqp.channel_max": "\(channelMax)",
            ])
    }

    func clientProperties() -> amqp_table_t {
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

    static func connectError(_ status: Int32, _ endpoint: AMQPConnection.Configuration.Endpoint) -> AMQPError {
        let target = "\(endpoint)"
        switch status {
        case AMQP_STATUS_TIMEOUT.rawValue:
            return AMQPError(code: .connectTimeout, message: "timed out connecting to \(target)", libraryStatus: status)
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue:
            return AMQPError(
                code: .connectionFailed, message: "could not resolve host \(endpoint.host)", libraryStatus: status)
        default:
            return AMQPError(
                code: .connectionFailed,
                message: "could not connect to \(target): \(libraryMessage(status)) (is the broker running?)",
                libraryStatus: status)
        }
    }

    static func loginError(_ reply: amqp_rpc_reply_t, _ configuration: AMQPConnection.Configuration)
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
            case AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_CLOSED.rawValue,
                AMQP_STATUS_SOCKET_ERROR.rawValue:
                // RabbitMQ reports refused credentials with a close (authentication_failure_close);
                // a dropped socket means a broker that is starting, stopping, or not accepting.
                return AMQPError(
                    code: .connectionFailed,
                    message: "the broker dropped the connection during the AMQP handshake (is it starting or stopping?)",
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
}
