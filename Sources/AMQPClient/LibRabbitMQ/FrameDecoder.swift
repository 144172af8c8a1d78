#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRabbitMQ

/// Decodes a byte stream of AMQP frames with librabbitmq's own decoders (`amqp_decode_method`,
/// `amqp_decode_properties`), the way a broker would read what ``FrameWriter`` wrote. Checks
/// each frame's framing (size, frame-end octet) and copies everything into Swift values.
///
/// Not on any connection's path: for tests that check the bytes the client writes.
enum FrameDecoder {
    struct Frame: Equatable {
        enum Payload: Equatable {
            /// A method this decoder has no finer case for.
            case method(AMQPMethodID)
            case publish(exchange: String, routingKey: String, mandatory: Bool)
            case ack(deliveryTag: UInt64, multiple: Bool)
            case nack(deliveryTag: UInt64, multiple: Bool, requeue: Bool)
            case reject(deliveryTag: UInt64, requeue: Bool)
            case header(classID: UInt16, bodySize: UInt64, properties: AMQPProperties)
            case body([UInt8])
        }

        let channel: UInt16
        let payload: Payload
    }

    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    static func decode(_ bytes: [UInt8]) throws -> [Frame] {
        var pool = amqp_pool_t()
        init_amqp_pool(&pool, 4096)
        defer { empty_amqp_pool(&pool) }
        var frames: [Frame] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 8 else { throw Malformed(description: "a truncated frame header") }
            let type = bytes[offset]
            let channel = UInt16(bytes[offset + 1]) << 8 | UInt16(bytes[offset + 2])
            let size = bytes[offset + 3..<offset + 7].reduce(0) { $0 << 8 | Int($1) }
            let payloadStart = offset + 7
            guard bytes.count - payloadStart > size else { throw Malformed(description: "a truncated payload") }
            guard bytes[payloadStart + size] == 0xCE else { throw Malformed(description: "no frame-end octet") }
            let payload = Array(bytes[payloadStart..<payloadStart + size])
            frames.append(Frame(channel: channel, payload: try decodePayload(type: type, payload, pool: &pool)))
            recycle_amqp_pool(&pool)
            offset = payloadStart + size + 1
        }
        return frames
    }

    private static func decodePayload(type: UInt8, _ payload: [UInt8], pool: inout amqp_pool_t) throws
        -> Frame.Payload
    {
        var payload = payload
        return try payload.withUnsafeMutableBytes { raw throws -> Frame.Payload in
            func readUInt(_ at: Int, _ count: Int) -> UInt64 {
                raw[at..<at + count].reduce(0) { $0 << 8 | UInt64($1) }
            }
            switch Int32(type) {
            case AMQP_FRAME_METHOD:
                guard raw.count >= 4 else { throw Malformed(description: "a method frame without a method id") }
                let id = AMQPMethodID(rawValue: UInt32(readUInt(0, 4)))
                var decoded: UnsafeMutableRawPointer?
                let arguments = amqp_bytes_t(len: raw.count - 4, bytes: raw.baseAddress! + 4)
                let status = amqp_decode_method(amqp_method_number_t(id.rawValue), &pool, arguments, &decoded)
                guard status >= 0, let decoded else { throw Malformed(description: "method \(id): \(LibraryStatus(status))") }
                switch amqp_method_number_t(id.rawValue) {
                case AMQP_BASIC_PUBLISH_METHOD:
                    let m = decoded.load(as: amqp_basic_publish_t.self)
                    return .publish(
                        exchange: CDecoding.string(m.exchange), routingKey: CDecoding.string(m.routing_key),
                        mandatory: m.mandatory != 0)
                case AMQP_BASIC_ACK_METHOD:
                    let m = decoded.load(as: amqp_basic_ack_t.self)
                    return .ack(deliveryTag: m.delivery_tag, multiple: m.multiple != 0)
                case AMQP_BASIC_NACK_METHOD:
                    let m = decoded.load(as: amqp_basic_nack_t.self)
                    return .nack(deliveryTag: m.delivery_tag, multiple: m.multiple != 0, requeue: m.requeue != 0)
                case AMQP_BASIC_REJECT_METHOD:
                    let m = decoded.load(as: amqp_basic_reject_t.self)
                    return .reject(deliveryTag: m.delivery_tag, requeue: m.requeue != 0)
                default:
                    return .method(id)
                }
            case AMQP_FRAME_HEADER:
                guard raw.count >= 12 else { throw Malformed(description: "a short content header") }
                let classID = UInt16(readUInt(0, 2))
                guard classID == UInt16(AMQP_BASIC_CLASS) else { throw Malformed(description: "header class \(classID)") }
                var decoded: UnsafeMutableRawPointer?
                let properties = amqp_bytes_t(len: raw.count - 12, bytes: raw.baseAddress! + 12)
                let status = amqp_decode_properties(classID, &pool, properties, &decoded)
                guard status >= 0, let decoded else { throw Malformed(description: "properties: \(LibraryStatus(status))") }
                return .header(
                    classID: classID, bodySize: readUInt(4, 8),
                    properties: try CDecoding.properties(decoded.load(as: amqp_basic_properties_t.self)))
            case AMQP_FRAME_BODY:
                return .body(Array(raw))
            default:
                throw Malformed(description: "frame type \(type)")
            }
        }
    }
}
