import CRabbitMQ

/// One frame read from the broker: a method as a Swift value, a content header or a body still
/// in librabbitmq's memory (valid until ``LibRabbitMQConnection/releaseBuffers(channel:)``).
///
/// Kept small, as it is passed along for every frame: a content header's properties are
/// decoded only when asked for.
struct ReceivedFrame {
    enum Payload {
        case method(ServerMethod)
        case header(ContentHeader)
        case body(UnsafeRawBufferPointer)
        /// A heartbeat, or a frame type AMQP 0-9-1 does not define.
        case other(type: UInt8)
    }

    let channel: UInt16
    let payload: Payload

    init(channel: UInt16, payload: Payload) {
        self.channel = channel
        self.payload = payload
    }

    init(_ frame: amqp_frame_t, reusing strings: inout RepeatedStrings) {
        channel = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            payload = .method(ServerMethod(frame.payload.method, reusing: &strings))
        case AMQP_FRAME_HEADER:
            let header = frame.payload.properties
            payload = .header(
                ContentHeader(classID: header.class_id, bodySize: header.body_size, decoded: UnsafeRawPointer(header.decoded)))
        case AMQP_FRAME_BODY:
            let fragment = frame.payload.body_fragment
            payload = .body(UnsafeRawBufferPointer(start: fragment.bytes, count: fragment.len))
        default:
            payload = .other(type: frame.frame_type)
        }
    }
}

/// A content header frame, its properties still as librabbitmq decoded them.
struct ContentHeader {
    let classID: UInt16
    let bodySize: UInt64
    /// The properties librabbitmq decoded, in its frame pool.
    private let decoded: UnsafeRawPointer?

    init(classID: UInt16, bodySize: UInt64, decoded: UnsafeRawPointer?) {
        self.classID = classID
        self.bodySize = bodySize
        self.decoded = decoded
    }

    /// The `basic` properties, copied into Swift values, and roughly what they hold in memory;
    /// `nil` for another class, whose properties are not an `amqp_basic_properties_t`
    /// (librabbitmq decodes each class's own), or for tables beyond the client's limits.
    func properties(reusing strings: inout RepeatedStrings) -> (properties: AMQPProperties, footprint: Int)? {
        guard classID == UInt16(AMQP_BASIC_CLASS), let decoded else { return nil }
        var footprint = 0
        guard
            let properties = try? CDecoding.properties(
                decoded.load(as: amqp_basic_properties_t.self), reusing: &strings, footprint: &footprint)
        else { return nil }
        return (properties, footprint)
    }
}
