import CRabbitMQ

// Every librabbitmq status and C reply the client meets becomes an AMQPError here.

extension AMQPError {
    /// A read or write on an open connection failed.
    static func connectionLost(_ status: LibraryStatus) -> AMQPError {
        if status == .heartbeatTimeout {
            return AMQPError(
                code: .connectionLost, message: "the broker stopped answering heartbeats", libraryStatus: status.rawValue)
        }
        return AMQPError(
            code: .connectionLost, message: "the connection failed: \(status)", libraryStatus: status.rawValue)
    }

    /// A write to the broker made no progress for `limit`: it stopped reading.
    static func stalledWrite(_ limit: Duration) -> AMQPError {
        AMQPError(
            code: .connectionLost,
            message: "the broker stopped reading: a write made no progress within \(limit)",
            libraryStatus: LibraryStatus.timeout.rawValue)
    }

    /// librabbitmq could not encode a message's frames (say, headers too large for a frame).
    static func unencodable(_ status: LibraryStatus) -> AMQPError {
        AMQPError(
            code: .invalidArgument, message: "the message could not be encoded: \(status)",
            libraryStatus: status.rawValue)
    }

    /// The TCP connection (or its set-up) to `endpoint` failed.
    static func connectFailed(_ status: LibraryStatus, _ endpoint: AMQPConnection.Configuration.Endpoint) -> AMQPError {
        switch status {
        case .timeout:
            return AMQPError(
                code: .connectTimeout, message: "timed out connecting to \(endpoint)", libraryStatus: status.rawValue)
        case .hostnameResolutionFailed:
            return AMQPError(
                code: .connectionFailed, message: "could not resolve host \(endpoint.host)",
                libraryStatus: status.rawValue)
        default:
            return AMQPError(
                code: .connectionFailed,
                message: "could not connect to \(endpoint): \(status) (is the broker running?)",
                libraryStatus: status.rawValue)
        }
    }

    /// Why `amqp_login` failed, or `nil` when it succeeded.
    static func loginFailure(_ reply: amqp_rpc_reply_t, _ configuration: AMQPConnection.Configuration) -> AMQPError? {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return nil
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            guard let decoded = reply.reply.decoded else {
                return AMQPError(code: .connectionClosed, message: "the broker closed the connection during login")
            }
            let close = decoded.load(as: amqp_connection_close_t.self)
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
            let status = LibraryStatus(reply.library_error)
            switch status {
            case .timeout:
                return AMQPError(
                    code: .connectTimeout, message: "the AMQP handshake did not finish in time",
                    libraryStatus: status.rawValue)
            case .connectionClosed, .socketClosed, .socketError:
                // RabbitMQ reports refused credentials with a close (authentication_failure_close);
                // a dropped socket means a broker that is starting, stopping, or not accepting.
                return AMQPError(
                    code: .connectionFailed,
                    message: "the broker dropped the connection during the AMQP handshake (is it starting or stopping?)",
                    libraryStatus: status.rawValue)
            default:
                return AMQPError(code: .library, message: "login failed: \(status)", libraryStatus: status.rawValue)
            }
        default:
            return AMQPError(code: .library, message: "login failed with an unexpected reply")
        }
    }

    /// The broker closed a channel; names the method it objected to when it said which.
    static func channelClosedByBroker(
        channel: UInt16, replyCode: UInt16, replyText: String, classID: UInt16, methodID: UInt16
    ) -> AMQPError {
        var message = "the broker closed channel \(channel)"
        if classID != 0 || methodID != 0 {
            let method = AMQPMethodID(classID: classID, methodID: methodID)
            if let name = amqp_method_name(amqp_method_number_t(method.rawValue)) {
                message += " after \(String(cString: name))"
            }
        }
        return AMQPError(
            code: replyCode == 403 ? .accessRefused : .channelClosed, message: message, replyCode: replyCode,
            replyText: replyText)
    }
}

extension AMQPMethodID {
    /// librabbitmq's name for the method (`AMQP_BASIC_ACK_METHOD`), or `nil` for one it does not know.
    var libraryName: String? {
        amqp_method_name(amqp_method_number_t(rawValue)).map { String(cString: $0) }
    }
}
