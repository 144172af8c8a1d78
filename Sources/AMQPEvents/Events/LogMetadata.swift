import AMQPClient
import Logging

extension Logger.MetadataValue {
    /// Text that came in a message (ids, types, a handler's error quoting the event), fit for a
    /// log line: escaped and cut as the client escapes the broker's text, so a publisher can
    /// neither forge log lines nor make them huge.
    static func untrusted(_ value: Any) -> Self {
        // An EventError describes itself escaped already: once is enough.
        if value is EventError { return .string("\(value)") }
        return .string(LogText.untrusted(value))
    }
}
