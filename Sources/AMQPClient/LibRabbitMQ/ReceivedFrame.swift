import CRabbitMQ

/// One frame read from the broker: a method as a Swift value, a content header or a body still
/// in librabbitmq's memory, which is freed by ``LibRabbitMQConnection/releaseBuffers(channel:)``.
///
/// Non-escapable: a frame lives only as long as the borrow of the connection that read it, so
/// the compiler refuses to store it, return it further, or keep it in a closure. Its body is a
/// `RawSpan` for the same reason; what outlives the read call is a copy.
///
/// Kept small, as it is passed along for every frame: a content header's properties are
/// decoded only when asked for.
struct ReceivedFrame: ~Escapable {
    enum Payload: ~Escapable {
        case method(ServerMethod)
        case header(ContentHeader)
        case body(RawSpan)
        /// A heartbeat, or a frame type AMQP 0-9-1 does not define.
        case other(type: UInt8)
    }

    let channel: UInt16
    let payload: Payload

    @_lifetime(copy payload)
    init(channel: UInt16, payload: consuming Payload) {
        self.channel = channel
        self.payload = payload
    }

    /// Wraps what librabbitmq decoded into `frame`. The caller ties the result's lifetime to the
    /// connection whose pools hold that memory.
    @_lifetime(immortal)
    static func borrowing(_ frame: amqp_frame_t, reusing strings: inout RepeatedStrings) -> ReceivedFrame {
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            return ReceivedFrame(channel: frame.channel, payload: .method(ServerMethod(frame.payload.method, reusing: &strings)))
        case AMQP_FRAME_HEADER:
            let header = frame.payload.properties
            let content = ContentHeader(classID: header.class_id, bodySize: header.body_size, decoded: UnsafeRawPointer(header.decoded))
            return _overrideLifetime(ReceivedFrame(channel: frame.channel, payload: .header(content)), borrowing: ())
        case AMQP_FRAME_BODY:
            let fragment = frame.payload.body_fragment
            let bytes = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(start: fragment.bytes, count: fragment.len))
            return _overrideLifetime(ReceivedFrame(channel: frame.channel, payload: .body(bytes)), borrowing: ())
        default:
            return ReceivedFrame(channel: frame.channel, payload: .other(type: frame.frame_type))
        }
    }
}

/// A content header frame, its properties still as librabbitmq decoded them (see ``ReceivedFrame``).
struct ContentHeader: ~Escapable {
    let classID: UInt16
    let bodySize: UInt64
    /// The properties librabbitmq decoded, in its frame pool.
    private let decoded: UnsafeRawPointer?

    @_lifetime(immortal)
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
