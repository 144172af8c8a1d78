import CRabbitMQ

/// One frame read from the broker, turned into Swift values (a body still points into
/// librabbitmq's memory; see ``LibRabbitMQConnection/nextFrame(timeout:)``).
struct ReceivedFrame {
    enum Payload {
        case method(ServerMethod)
        /// A content header. `properties` is `nil` for a class other than `basic`, whose
        /// properties this client does not read.
        case header(properties: AMQPProperties?, bodySize: UInt64)
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

    init(_ frame: amqp_frame_t) {
        channel = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            payload = .method(ServerMethod(frame.payload.method))
        case AMQP_FRAME_HEADER:
            let header = frame.payload.properties
            // librabbitmq decodes the properties of the header's own class: only `basic`'s are
            // an amqp_basic_properties_t.
            let properties =
                header.class_id == UInt16(AMQP_BASIC_CLASS)
                ? header.decoded.map { CDecoding.properties($0.load(as: amqp_basic_properties_t.self)) } : nil
            payload = .header(properties: properties, bodySize: header.body_size)
        case AMQP_FRAME_BODY:
            let fragment = frame.payload.body_fragment
            payload = .body(UnsafeRawBufferPointer(start: fragment.bytes, count: fragment.len))
        default:
            payload = .other(type: frame.frame_type)
        }
    }
}
