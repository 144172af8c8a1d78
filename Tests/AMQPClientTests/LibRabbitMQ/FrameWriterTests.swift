import Testing

@testable import AMQPClient

@Suite("LibRabbitMQ: the frame writer's bytes, read back with librabbitmq's decoders")
struct FrameWriterTests {
    /// The bytes a writer holds, read through a socket pair as the broker would receive them.
    static func written(_ fill: (FrameWriter) -> Void, frameMax: Int = 131_072) throws -> [UInt8] {
        let writer = FrameWriter()
        writer.frameMax = frameMax
        fill(writer)
        return try SocketPair.capture { socket in
            #expect(writer.flush(to: .plain(socket: socket), limits: .init(stall: .seconds(5))) == .ok)
        }
    }

    @Test("a publish is a method, a content header with every property, and its body")
    func publish() throws {
        let properties = AMQPProperties(
            contentType: "application/json", headers: ["trace": "abc", "n": 7], deliveryMode: .persistent,
            correlationID: "c-1", messageID: "m-1", type: "OrderPlaced", appID: "orders")
        let request = PublishRequest(
            exchange: "orders", routingKey: "order.placed", mandatory: true, properties: properties,
            body: Array("hello".utf8), confirm: nil)
        let bytes = try Self.written { #expect($0.appendPublish(request, channel: 3) == .ok) }
        let frames = try FrameDecoder.decode(bytes)
        #expect(
            frames == [
                .init(channel: 3, payload: .publish(exchange: "orders", routingKey: "order.placed", mandatory: true)),
                .init(channel: 3, payload: .header(classID: 60, bodySize: 5, properties: properties)),
                .init(channel: 3, payload: .body(Array("hello".utf8))),
            ])
    }

    @Test("a body larger than frame_max is split into frames that fill it exactly")
    func bodySplit() throws {
        let frameMax = 4096
        let body = (0..<10_000).map { UInt8(truncatingIfNeeded: $0) }
        let request = PublishRequest(
            exchange: "", routingKey: "q", mandatory: false, properties: AMQPProperties(), body: body, confirm: nil)
        let frames = try FrameDecoder.decode(
            try Self.written({ #expect($0.appendPublish(request, channel: 1) == .ok) }, frameMax: frameMax))
        let bodies = frames.compactMap { frame -> [UInt8]? in
            if case .body(let bytes) = frame.payload { bytes } else { nil }
        }
        #expect(bodies.map(\.count) == [frameMax - 8, frameMax - 8, 10_000 - 2 * (frameMax - 8)])
        #expect(bodies.flatMap { $0 } == body)
    }

    @Test("methods and acks of a batch go out together, in order")
    func methods() throws {
        let bytes = try Self.written { writer in
            #expect(writer.append(.basicAck(deliveryTag: 9, multiple: true), channel: 1) == .ok)
            #expect(writer.append(.basicReject(deliveryTag: 10, requeue: false), channel: 1) == .ok)
            #expect(writer.append(.basicNack(deliveryTag: 11, multiple: false, requeue: true), channel: 2) == .ok)
            #expect(writer.append(.queueDeclare(name: "q", passive: false, durable: true, exclusive: false, autoDelete: false, arguments: ["x-queue-type": "quorum"]), channel: 2) == .ok)
        }
        #expect(
            try FrameDecoder.decode(bytes) == [
                .init(channel: 1, payload: .ack(deliveryTag: 9, multiple: true)),
                .init(channel: 1, payload: .reject(deliveryTag: 10, requeue: false)),
                .init(channel: 2, payload: .nack(deliveryTag: 11, multiple: false, requeue: true)),
                .init(channel: 2, payload: .method(AMQPMethodID(classID: 50, methodID: 10))),
            ])
    }

    @Test("a publish whose properties do not fit a frame leaves nothing behind")
    func unencodable() throws {
        let writer = FrameWriter()
        writer.frameMax = 4096
        let huge = AMQPProperties(headers: ["big": .string(String(repeating: "x", count: 8000))])
        let request = PublishRequest(exchange: "", routingKey: "q", mandatory: false, properties: huge, body: [1], confirm: nil)
        #expect(writer.appendPublish(request, channel: 1) != .ok)
        #expect(writer.isEmpty)
    }
}

@Suite("LibRabbitMQ: method numbers")
struct MethodIDTests {
    @Test("the client's method numbers are librabbitmq's")
    func namesMatch() {
        let expected: [(AMQPMethodID, String)] = [
            (.connectionClose, "AMQP_CONNECTION_CLOSE_METHOD"), (.connectionCloseOk, "AMQP_CONNECTION_CLOSE_OK_METHOD"),
            (.channelOpenOk, "AMQP_CHANNEL_OPEN_OK_METHOD"), (.channelClose, "AMQP_CHANNEL_CLOSE_METHOD"),
            (.channelCloseOk, "AMQP_CHANNEL_CLOSE_OK_METHOD"), (.exchangeDeclareOk, "AMQP_EXCHANGE_DECLARE_OK_METHOD"),
            (.exchangeDeleteOk, "AMQP_EXCHANGE_DELETE_OK_METHOD"), (.exchangeBindOk, "AMQP_EXCHANGE_BIND_OK_METHOD"),
            (.exchangeUnbindOk, "AMQP_EXCHANGE_UNBIND_OK_METHOD"), (.queueDeclareOk, "AMQP_QUEUE_DECLARE_OK_METHOD"),
            (.queueBindOk, "AMQP_QUEUE_BIND_OK_METHOD"), (.queuePurgeOk, "AMQP_QUEUE_PURGE_OK_METHOD"),
            (.queueDeleteOk, "AMQP_QUEUE_DELETE_OK_METHOD"), (.queueUnbindOk, "AMQP_QUEUE_UNBIND_OK_METHOD"),
            (.basicQosOk, "AMQP_BASIC_QOS_OK_METHOD"), (.basicConsumeOk, "AMQP_BASIC_CONSUME_OK_METHOD"),
            (.basicCancelOk, "AMQP_BASIC_CANCEL_OK_METHOD"), (.basicGetOk, "AMQP_BASIC_GET_OK_METHOD"),
            (.basicGetEmpty, "AMQP_BASIC_GET_EMPTY_METHOD"), (.basicRecoverOk, "AMQP_BASIC_RECOVER_OK_METHOD"),
            (.confirmSelectOk, "AMQP_CONFIRM_SELECT_OK_METHOD"),
        ]
        for (id, name) in expected {
            #expect(id.libraryName == name, "\(id)")
        }
    }
}
