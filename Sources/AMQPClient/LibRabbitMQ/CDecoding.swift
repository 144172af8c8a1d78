#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CRabbitMQ

/// Copies of librabbitmq's decoded values into Swift values. Frames live in a pool
/// that is recycled right after they are handled, so nothing may keep a pointer.
enum CDecoding {
    @inline(__always)
    static func string(_ bytes: amqp_bytes_t) -> String {
        guard bytes.len > 0, let base = bytes.bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }

    static func byteArray(_ bytes: amqp_bytes_t) -> [UInt8] {
        guard bytes.len > 0, let base = bytes.bytes else { return [] }
        return Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }

    /// Bounds a conversion and measures what it made. A second wall behind the frame scanner,
    /// which refuses the same tables before librabbitmq decodes them.
    struct Conversion {
        var depth = 0
        var values = 0
        /// Roughly what the converted values hold in memory: what a buffered delivery is charged.
        var footprint = 0
        let maximumDepth = InboundFrameScanner.Limits.tableDepth
        let maximumValues = InboundFrameScanner.Limits.tableEntries

        /// What each value costs besides its bytes: the Swift value, and a dictionary slot.
        static let valueCost = 64

        mutating func count(bytes: Int) throws(ProtocolViolation) {
            values += 1
            footprint += Self.valueCost + bytes
            guard values <= maximumValues else {
                throw .syntaxError("a field table holds more than \(maximumValues) values")
            }
        }

        mutating func enter() throws(ProtocolViolation) {
            depth += 1
            guard depth <= maximumDepth else {
                throw .syntaxError("field tables or arrays nest more than \(maximumDepth) deep")
            }
        }
    }

    static func table(_ table: amqp_table_t) throws(ProtocolViolation) -> AMQPFieldTable {
        var conversion = Conversion()
        return try self.table(table, &conversion)
    }

    static func table(_ table: amqp_table_t, _ conversion: inout Conversion) throws(ProtocolViolation) -> AMQPFieldTable {
        try conversion.enter()
        defer { conversion.depth -= 1 }
        var result = AMQPFieldTable()
        guard table.num_entries > 0, let entries = table.entries else { return result }
        result.values.reserveCapacity(Int(table.num_entries))
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            try conversion.count(bytes: entry.key.len)
            result.values[string(entry.key)] = try fieldValue(entry.value, &conversion)
        }
        return result
    }

    static func fieldValue(_ field: amqp_field_value_t, _ conversion: inout Conversion) throws(ProtocolViolation)
        -> AMQPFieldValue
    {
        switch UInt32(field.kind) {
        case AMQP_FIELD_KIND_BOOLEAN.rawValue: return .bool(field.value.boolean != 0)
        case AMQP_FIELD_KIND_I8.rawValue: return .int8(field.value.i8)
        case AMQP_FIELD_KIND_U8.rawValue: return .uint8(field.value.u8)
        case AMQP_FIELD_KIND_I16.rawValue: return .int16(field.value.i16)
        case AMQP_FIELD_KIND_U16.rawValue: return .uint16(field.value.u16)
        case AMQP_FIELD_KIND_I32.rawValue: return .int32(field.value.i32)
        case AMQP_FIELD_KIND_U32.rawValue: return .uint32(field.value.u32)
        case AMQP_FIELD_KIND_I64.rawValue: return .int64(field.value.i64)
        // RabbitMQ has no unsigned 64-bit type; librabbitmq does. Keep the bits.
        case AMQP_FIELD_KIND_U64.rawValue: return .int64(Int64(bitPattern: field.value.u64))
        case AMQP_FIELD_KIND_F32.rawValue: return .float(field.value.f32)
        case AMQP_FIELD_KIND_F64.rawValue: return .double(field.value.f64)
        case AMQP_FIELD_KIND_DECIMAL.rawValue:
            return .decimal(AMQPDecimal(scale: field.value.decimal.decimals, value: field.value.decimal.value))
        case AMQP_FIELD_KIND_UTF8.rawValue:
            conversion.footprint += field.value.bytes.len
            return .string(string(field.value.bytes))
        case AMQP_FIELD_KIND_BYTES.rawValue:
            conversion.footprint += field.value.bytes.len
            return .bytes(byteArray(field.value.bytes))
        case AMQP_FIELD_KIND_TIMESTAMP.rawValue: return .timestamp(AMQPTimestamp.date(field.value.u64))
        case AMQP_FIELD_KIND_TABLE.rawValue: return .table(try table(field.value.table, &conversion))
        case AMQP_FIELD_KIND_ARRAY.rawValue:
            try conversion.enter()
            defer { conversion.depth -= 1 }
            let array = field.value.array
            guard array.num_entries > 0, let entries = array.entries else { return .array([]) }
            var values: [AMQPFieldValue] = []
            values.reserveCapacity(Int(array.num_entries))
            for index in 0..<Int(array.num_entries) {
                try conversion.count(bytes: 0)
                values.append(try fieldValue(entries[index], &conversion))
            }
            return .array(values)
        default: return .void
        }
    }

    /// A string that is likely to repeat, reusing a recent equal one (see ``RepeatedStrings``).
    @inline(__always)
    static func string(_ bytes: amqp_bytes_t, reusing strings: inout RepeatedStrings) -> String {
        guard bytes.len > 0, let base = bytes.bytes else { return "" }
        return strings.string(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }

    static func properties(_ c: amqp_basic_properties_t) throws(ProtocolViolation) -> AMQPProperties {
        var strings = RepeatedStrings()
        var footprint = 0
        return try properties(c, reusing: &strings, footprint: &footprint)
    }

    /// The values that repeat from message to message (content type and encoding, type, user
    /// and app id) reuse recent strings; ids do not. `footprint` grows by roughly what the
    /// properties hold in memory.
    static func properties(
        _ c: amqp_basic_properties_t, reusing strings: inout RepeatedStrings, footprint: inout Int
    ) throws(ProtocolViolation) -> AMQPProperties {
        let flags = UInt32(c._flags)
        guard flags != 0 else { return AMQPProperties() }
        func has(_ flag: Int32) -> Bool { flags & UInt32(flag) != 0 }
        var p = AMQPProperties()
        if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { p.contentType = string(c.content_type, reusing: &strings) }
        if has(AMQP_BASIC_CONTENT_ENCODING_FLAG) { p.contentEncoding = string(c.content_encoding, reusing: &strings) }
        if has(AMQP_BASIC_HEADERS_FLAG) {
            var conversion = Conversion()
            p.headers = try table(c.headers, &conversion)
            footprint += conversion.footprint
        }
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { p.deliveryMode = AMQPProperties.DeliveryMode(rawValue: c.delivery_mode) }
        if has(AMQP_BASIC_PRIORITY_FLAG) { p.priority = c.priority }
        // Fields whose flag is clear hold whatever librabbitmq left there: read only those set.
        // Each short string costs at most 255 bytes, and a String's worth besides.
        func short(_ bytes: amqp_bytes_t) -> String {
            footprint += 32 + bytes.len
            return string(bytes)
        }
        if has(AMQP_BASIC_CORRELATION_ID_FLAG) { p.correlationID = short(c.correlation_id) }
        if has(AMQP_BASIC_REPLY_TO_FLAG) { p.replyTo = short(c.reply_to) }
        if has(AMQP_BASIC_EXPIRATION_FLAG) { p.expiration = short(c.expiration) }
        if has(AMQP_BASIC_MESSAGE_ID_FLAG) { p.messageID = short(c.message_id) }
        if has(AMQP_BASIC_TIMESTAMP_FLAG) { p.timestamp = AMQPTimestamp.date(c.timestamp) }
        if has(AMQP_BASIC_TYPE_FLAG) { p.type = string(c.type, reusing: &strings) }
        if has(AMQP_BASIC_USER_ID_FLAG) { p.userID = string(c.user_id, reusing: &strings) }
        if has(AMQP_BASIC_APP_ID_FLAG) { p.appID = string(c.app_id, reusing: &strings) }
        // The reused strings (content type, type, ids of user and app) are shared, not copied.
        footprint += 6 * 16
        return p
    }
}

/// AMQP timestamps are whole seconds since 1970.
enum AMQPTimestamp {
    static func seconds(_ date: Date) -> UInt64 {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        return seconds <= 0 ? 0 : UInt64(seconds)
    }

    static func date(_ seconds: UInt64) -> Date {
        Date(timeIntervalSince1970: TimeInterval(seconds))
    }
}
