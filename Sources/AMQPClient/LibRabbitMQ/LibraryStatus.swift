import CRabbitMQ

/// A status returned by librabbitmq (`amqp_status_enum`): zero is success, negative values
/// are failures. Compared by name here instead of raw `Int32`s everywhere.
struct LibraryStatus: Hashable, Sendable, CustomStringConvertible {
    let rawValue: Int32

    init(_ rawValue: Int32) {
        self.rawValue = rawValue
    }

    init(_ status: amqp_status_enum) {
        self.rawValue = status.rawValue
    }

    static var ok: Self { .init(AMQP_STATUS_OK) }
    static var timeout: Self { .init(AMQP_STATUS_TIMEOUT) }
    static var heartbeatTimeout: Self { .init(AMQP_STATUS_HEARTBEAT_TIMEOUT) }
    static var socketError: Self { .init(AMQP_STATUS_SOCKET_ERROR) }
    static var socketClosed: Self { .init(AMQP_STATUS_SOCKET_CLOSED) }
    static var connectionClosed: Self { .init(AMQP_STATUS_CONNECTION_CLOSED) }
    static var hostnameResolutionFailed: Self { .init(AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED) }

    var isOK: Bool { rawValue == AMQP_STATUS_OK.rawValue }

    /// librabbitmq's own text for the status (a static string: nothing to free).
    var description: String { String(cString: amqp_error_string2(rawValue)) }
}
