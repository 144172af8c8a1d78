import CRabbitMQ

enum ThreadName {
    /// Names the calling thread, as top, perf and debuggers show it (at most 15 bytes on Linux).
    static func set(_ name: String) {
        camqp_set_thread_name(name)
    }
}
