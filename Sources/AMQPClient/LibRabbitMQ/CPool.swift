import CRabbitMQ

/// Scratch memory for the C structs of one outgoing method or publish.
///
/// librabbitmq only reads the strings and tables it is handed during the call, so
/// everything is copied into one `amqp_pool_t` that is recycled after each call:
/// no allocation per message once the pool has grown to the working size.
/// Used only on the connection's I/O thread.
final class CPool {
    private let pool: UnsafeMutablePointer<amqp_pool_t>

    init() {
        pool = .allocate(capacity: 1)
        init_amqp_pool(pool, 16 * 1024)
    }

    deinit {
        empty_amqp_pool(pool)
        pool.deallocate()
    }

    /// Frees everything handed out since the last recycle (keeps the first page).
    func recycle() {
        recycle_amqp_pool(pool)
    }

    func bytes(_ string: String) -> amqp_bytes_t {
        var string = string
        return string.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    func bytes(_ source: UnsafeRawBufferPointer) -> amqp_bytes_t {
        guard source.count > 0, let memory = amqp_pool_alloc(pool, source.count) else {
            return amqp_bytes_t(len: 0, bytes: nil)
        }
        memory.copyMemory(from: source.baseAddress!, byteCount: source.count)
        return amqp_bytes_t(len: source.count, bytes: memory)
    }

    func bytes(_ array: [UInt8]) -> amqp_bytes_t {
        array.withUnsafeBytes { bytes($0) }
    }

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let raw = amqp_pool_alloc(pool, MemoryLayout<T>.stride * count)!
        return raw.bindMemory(to: T.self, capacity: count)
    }

    func table(_ table: AMQPFieldTable?) -> amqp_table_t {
        guard let table, !table.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let entries = allocate(amqp_table_entry_t.self, count: table.count)
        for (index, (key, value)) in table.values.enumerated() {
            entries.advanced(by: index).initialize(to: amqp_table_entry_t(key: bytes(key), value: fieldValue(value)))
        }
        return amqp_table_t(num_entries: Int32(table.count), entries: entries)
    }

    func fieldValue(_ value: AMQPFieldValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .bool(let v):
            field.kind = kind(AMQP_FIELD_KIND_BOOLEAN)
            field.value.boolean = v ? 1 : 0
        case .int8(let v):
            field.kind = kind(AMQP_FIELD_KIND_I8)
            field.value.i8 = v
        case .uint8(let v):
            field.kind = kind(AMQP_FIELD_KIND_U8)
            field.value.u8 = v
        case .int16(let v):
            field.kind = kind(AMQP_FIELD_KIND_I16)
            field.value.i16 = v
        case .uint16(let v):
            field.kind = kind(AMQP_FIELD_KIND_U16)
            field.value.u16 = v
        case .int32(let v):
            field.kind = kind(AMQP_FIELD_KIND_I32)
            field.value.i32 = v
        case .uint32(let v):
            field.kind = kind(AMQP_FIELD_KIND_U32)
            field.value.u32 = v
        case .int64(let v):
            field.kind = kind(AMQP_FIELD_KIND_I64)
            field.value.i64 = v
        case .float(let v):
            field.kind = kind(AMQP_FIELD_KIND_F32)
            field.value.f32 = v
        case .double(let v):
            field.kind = kind(AMQP_FIELD_KIND_F64)
            field.value.f64 = v
        case .decimal(let v):
            field.kind = kind(AMQP_FIELD_KIND_DECIMAL)
            field.value.decimal = amqp_decimal_t(decimals: v.scale, value: v.value)
        case .string(let v):
            field.kind = kind(AMQP_FIELD_KIND_UTF8)
            field.value.bytes = bytes(v)
        case .bytes(let v):
            field.kind = kind(AMQP_FIELD_KIND_BYTES)
            field.value.bytes = bytes(v)
        case .timestamp(let v):
            field.kind = kind(AMQP_FIELD_KIND_TIMESTAMP)
            field.value.u64 = AMQPTimestamp.seconds(v)
        case .table(let v):
            field.kind = kind(AMQP_FIELD_KIND_TABLE)
            field.value.table = table(v)
        case .array(let values):
            field.kind = kind(AMQP_FIELD_KIND_ARRAY)
            let entries = allocate(amqp_field_value_t.self, count: max(values.count, 1))
            for (index, element) in values.enumerated() {
                entries.advanced(by: index).initialize(to: fieldValue(element))
            }
            field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: values.isEmpty ? nil : entries)
        case .void:
            field.kind = kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }

    func properties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var c = amqp_basic_properties_t()
        var flags: UInt32 = 0
        if let v = properties.contentType {
            flags |= UInt32(AMQP_BASIC_CONTENT_TYPE_FLAG)
            c.content_type = bytes(v)
        }
        if let v = properties.contentEncoding {
            flags |= UInt32(AMQP_BASIC_CONTENT_ENCODING_FLAG)
            c.content_encoding = bytes(v)
        }
        if let v = properties.headers {
            flags |= UInt32(AMQP_BASIC_HEADERS_FLAG)
            c.headers = table(v)
        }
        if let v = properties.deliveryMode {
            flags |= UInt32(AMQP_BASIC_DELIVERY_MODE_FLAG)
            c.delivery_mode = v.rawValue
        }
        if let v = properties.priority {
            flags |= UInt32(AMQP_BASIC_PRIORITY_FLAG)
            c.priority = v
        }
        if let v = properties.correlationID {
            flags |= UInt32(AMQP_BASIC_CORRELATION_ID_FLAG)
            c.correlation_id = bytes(v)
        }
        if let v = properties.replyTo {
            flags |= UInt32(AMQP_BASIC_REPLY_TO_FLAG)
            c.reply_to = bytes(v)
        }
        if let v = properties.expiration {
            flags |= UInt32(AMQP_BASIC_EXPIRATION_FLAG)
            c.expiration = bytes(v)
        }
        if let v = properties.messageID {
            flags |= UInt32(AMQP_BASIC_MESSAGE_ID_FLAG)
            c.message_id = bytes(v)
        }
        if let v = properties.timestamp {
            flags |= UInt32(AMQP_BASIC_TIMESTAMP_FLAG)
            c.timestamp = AMQPTimestamp.seconds(v)
        }
        if let v = properties.type {
            flags |= UInt32(AMQP_BASIC_TYPE_FLAG)
            c.type = bytes(v)
        }
        if let v = properties.userID {
            flags |= UInt32(AMQP_BASIC_USER_ID_FLAG)
            c.user_id = bytes(v)
        }
        if let v = properties.appID {
            flags |= UInt32(AMQP_BASIC_APP_ID_FLAG)
            c.app_id = bytes(v)
        }
        c._flags = amqp_flags_t(flags)
        return c
    }

    private func kind(_ kind: amqp_field_value_kind_t) -> UInt8 {
        UInt8(kind.rawValue)
    }
}
