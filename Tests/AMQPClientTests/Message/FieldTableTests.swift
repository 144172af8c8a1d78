import CRabbitMQ
import Foundation
import Testing

@testable import AMQPClient

@Suite("Field tables and properties")
struct FieldTableTests {
    static let everyType: AMQPFieldTable = [
        "bool": true, "int8": .int8(-8), "uint8": .uint8(255), "int16": .int16(.min), "uint16": .uint16(.max),
        "int32": .int32(.min), "uint32": .uint32(.max), "int64": .int64(.min), "float": .float(-0.5),
        "double": .double(.greatestFiniteMagnitude), "decimal": .decimal(AMQPDecimal(scale: 3, value: 1)),
        "string": "ünïcødé ✓", "empty-string": "", "bytes": .bytes([0, 255, 10]), "empty-bytes": .bytes([]),
        "timestamp": .timestamp(Date(timeIntervalSince1970: 1_234_567_890)), "void": nil,
        "table": ["inner": ["x": 1], "list": [1, 2]], "array": [true, 1.25, "s", [], [:]],
    ]

    @Test("literals pick the expected cases")
    func literals() {
        let table: AMQPFieldTable = ["a": 1, "b": 5_000_000_000, "c": "s", "d": true, "e": 1.5, "f": nil, "g": [1], "h": ["k": 2]]
        #expect(table["a"] == .int32(1))
        #expect(table["b"] == .int64(5_000_000_000))
        #expect(table["c"] == .string("s"))
        #expect(table["d"] == .bool(true))
        #expect(table["e"] == .double(1.5))
        #expect(table["f"] == .void)
        #expect(table["g"] == .array([.int32(1)]))
        #expect(table["h"] == .table(["k": .int32(2)]))
    }

    @Test("every field type survives librabbitmq's wire encoding and decoding exactly")
    func wireRoundTrip() throws {
        let pool = CPool()
        var encodedTable = pool.table(Self.everyType)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var decodePool = amqp_pool_t()
        init_amqp_pool(&decodePool, 4096)
        defer { empty_amqp_pool(&decodePool) }
        let decoded = try buffer.withUnsafeMutableBytes { raw -> AMQPFieldTable in
            let bytes = amqp_bytes_t(len: raw.count, bytes: raw.baseAddress)
            var offset = 0
            try #require(amqp_encode_table(bytes, &encodedTable, &offset) == AMQP_STATUS_OK.rawValue)
            var table = amqp_table_t()
            var readOffset = 0
            let encoded = amqp_bytes_t(len: offset, bytes: raw.baseAddress)
            try #require(amqp_decode_table(encoded, &decodePool, &table, &readOffset) == AMQP_STATUS_OK.rawValue)
            #expect(readOffset == offset)
            return try CDecoding.table(table)
        }
        #expect(decoded == Self.everyType)
    }

    @Test("every basic property survives librabbitmq's wire encoding and decoding exactly")
    func propertiesRoundTrip() throws {
        let properties = AMQPProperties(
            contentType: "application/json", contentEncoding: "gzip", headers: Self.everyType,
            deliveryMode: .persistent, priority: 9, correlationID: "c", replyTo: "r", expiration: "1000",
            messageID: "m", timestamp: Date(timeIntervalSince1970: 42), type: "t", userID: "u", appID: "a")
        for sample in [properties, AMQPProperties(), AMQPProperties(deliveryMode: .transient)] {
            let pool = CPool()
            var c = pool.properties(sample)
            var buffer = [UInt8](repeating: 0, count: 8192)
            var decodePool = amqp_pool_t()
            init_amqp_pool(&decodePool, 4096)
            defer { empty_amqp_pool(&decodePool) }
            let decoded = try buffer.withUnsafeMutableBytes { raw -> AMQPProperties in
                let length = amqp_encode_properties(UInt16(AMQP_BASIC_CLASS), &c, amqp_bytes_t(len: raw.count, bytes: raw.baseAddress))
                try #require(length >= 0)
                var out: UnsafeMutableRawPointer?
                let status = amqp_decode_properties(
                    UInt16(AMQP_BASIC_CLASS), &decodePool, amqp_bytes_t(len: Int(length), bytes: raw.baseAddress), &out)
                try #require(status == AMQP_STATUS_OK.rawValue)
                return try CDecoding.properties(out!.load(as: amqp_basic_properties_t.self))
            }
            #expect(decoded == sample)
        }
    }

    @Test("converting librabbitmq's values is bounded too: 100 deep, 10,000 values")
    func conversionLimits() throws {
        /// Tables and arrays in turn, `levels` deep.
        func nested(_ levels: Int) -> AMQPFieldValue {
            (0..<levels).reduce(AMQPFieldValue.void) { inner, level in level.isMultiple(of: 2) ? .array([inner]) : .table(["n": inner]) }
        }
        let pool = CPool()
        // The outer table is one level: 99 more fit, 100 do not.
        #expect(throws: ProtocolViolation.self) { try CDecoding.table(pool.table(["deep": nested(100)])) }
        #expect(throws: Never.self) { try CDecoding.table(pool.table(["deep": nested(99)])) }
        let many = AMQPFieldTable(["many": .array(Array(repeating: .void, count: 10_000))])
        #expect(throws: ProtocolViolation.self) { try CDecoding.table(pool.table(many)) }
        let fewer = AMQPFieldTable(["many": .array(Array(repeating: .void, count: 9_999))])
        #expect(throws: Never.self) { try CDecoding.table(pool.table(fewer)) }
    }

    @Test("timestamps are whole seconds")
    func timestampsTruncate() {
        #expect(AMQPTimestamp.seconds(Date(timeIntervalSince1970: 10.9)) == 10)
        #expect(AMQPTimestamp.date(10) == Date(timeIntervalSince1970: 10))
    }

    @Test("keys over 255 bytes are refused at any depth")
    func longKeys() {
        let long = String(repeating: "k", count: 256)
        #expect(throws: AMQPError.self) { try AMQPFieldTable([long: 1]).validate("header") }
        #expect(throws: AMQPError.self) { try AMQPFieldTable(["ok": .table([long: 1])]).validate("header") }
        #expect(throws: AMQPError.self) { try AMQPFieldTable(["ok": [.table([long: 1])]]).validate("header") }
        #expect(throws: Never.self) { try AMQPFieldTable([String(repeating: "k", count: 255): 1]).validate("header") }
        #expect(throws: AMQPError.self) { try AMQPProperties(correlationID: long).validate() }
    }
}
