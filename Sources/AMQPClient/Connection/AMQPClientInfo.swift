/// What this client announces to the broker (shown in RabbitMQ's management UI).
enum AMQPClientInfo {
    static let product = "swift-amqp-client"
    static let version = "0.1.0"
    #if os(Linux)
    static let platform = "Swift on Linux"
    #elseif os(macOS)
    static let platform = "Swift on macOS"
    #else
    static let platform = "Swift"
    #endif
}
