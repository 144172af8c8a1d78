/// Checks the byte stream from the broker frame by frame, before librabbitmq parses it: the
/// one place where every byte from the network is validated before anything is sized from it,
/// allocated for it, or recursed into.
///
/// librabbitmq 0.11 trusts the peer in ways a hostile or broken one can exploit: it keeps a
/// frame_max-sized memory pool for every channel number it sees (also in frames it drops), it
/// silently swallows frames of unknown types, and it decodes field tables recursively with no
/// depth limit. The scanner refuses all of these: it sees every byte
/// ``LibRabbitMQConnection`` receives, in order, as it arrives.
///
/// A value type fed with the bytes of each read, so that it is tested without a socket.
struct InboundFrameScanner {
    struct Limits: Equatable {
        /// The largest frame, header and frame-end included (the negotiated frame_max; until the
        /// broker's `connection.tune` is through, the client's own).
        var frameMax: Int
        /// The largest message body a content header may announce.
        var maximumMessageSize: UInt64
        /// How deeply field tables and arrays may nest (newer librabbitmq's limit).
        var maximumTableDepth: Int = Self.tableDepth
        /// How many values one table may hold, those of the tables and arrays nested in it
        /// included: each costs librabbitmq 24 to 40 bytes and the client a Swift value, so a
        /// frame of one-byte values must not become megabytes.
        var maximumTableEntries: Int = Self.tableEntries

        static let tableDepth = 100
        static let tableEntries = 10_000
    }

    private enum Stage {
        /// At the start of the stream: the broker may answer with a protocol header instead.
        case streamStart
        /// Reading a frame's 7-byte header.
        case frameHeader
        /// Reading a method or content header payload, which is checked once it is whole.
        case payload(type: UInt8, channel: UInt16, size: Int)
        /// Skipping a body payload, which is never looked into.
        case body(remaining: Int)
        /// Expecting the frame-end octet.
        case frameEnd
        /// A violation was found: nothing more is accepted.
        case failed(ProtocolViolation)
    }

    var limits: Limits
    private var stage = Stage.streamStart
    /// The header or payload bytes gathered across reads.
    private var gathered: [UInt8] = []
    /// After a read with a violation: how many of its bytes hold whole frames that came before
    /// the refused one. They are valid, and librabbitmq gets them before the connection fails
    /// (a `consume-ok` in the same segment as a violation is still a `consume-ok`).
    private(set) var validPrefix = 0

    init(limits: Limits) {
        self.limits = limits
        gathered.reserveCapacity(256)
    }

    /// Checks the next bytes of the stream. `isOpen` tells whether a channel number is one the
    /// client opened and has not seen closed. Returns the first violation; after one, every
    /// later call returns it too.
    ///
    /// Headers and payloads are read in place when a read holds them whole (the common case),
    /// and gathered across reads when it does not; bodies are never looked into.
    mutating func scan(_ bytes: UnsafeRawBufferPointer, isOpen: (UInt16) -> Bool) -> ProtocolViolation? {
        // Channels do not open or close while librabbitmq reads: one answer per channel per read.
        var knownOpen: UInt16 = 0
        let isOpen = { (channel: UInt16) -> Bool in
            if channel == knownOpen { return true }
            guard isOpen(channel) else { return false }
            knownOpen = channel
            return true
        }
        var offset = 0
        // Where the frame being checked began in this read (0 when it began in an earlier one).
        var frameStart = 0
        validPrefix = 0
        while offset < bytes.count {
            switch stage {
            case .failed(let violation):
                return violation
            case .streamStart:
                // "AMQP" followed by a version: a broker that refuses our protocol version says so.
                if bytes[offset] == UInt8(ascii: "A") || !gathered.isEmpty {
                    guard withNext(8, of: bytes, at: &offset, { _ in }) != nil else { return nil }
                }
                stage = .frameHeader
            case .frameHeader:
                if gathered.isEmpty { frameStart = offset }
                let header = withNext(7, of: bytes, at: &offset) { header in
                    (
                        type: header[0], channel: UInt16(header[1]) << 8 | UInt16(header[2]),
                        size: Int(header[3]) << 24 | Int(header[4]) << 16 | Int(header[5]) << 8 | Int(header[6])
                    )
                }
                guard let (type, channel, size) = header else { return nil }
                if let violation = checkFrameHeader(type: type, channel: channel, size: size, isOpen: isOpen) {
                    return fail(violation, validPrefix: frameStart)
                }
                switch type {
                case Self.methodFrame, Self.headerFrame: stage = .payload(type: type, channel: channel, size: size)
                case Self.bodyFrame: stage = size > 0 ? .body(remaining: size) : .frameEnd
                default: stage = .frameEnd  // heartbeat: no payload
                }
            case .payload(let type, let channel, let size):
                let limits = self.limits
                let checked = withNext(size, of: bytes, at: &offset) { payload in
                    type == Self.methodFrame
                        ? Self.checkMethod(payload, channel: channel, limits: limits)
                        : Self.checkContentHeader(payload, limits: limits)
                }
                guard let checked else { return nil }
                if let violation = checked { return fail(violation, validPrefix: frameStart) }
                stage = .frameEnd
            case .body(let remaining):
                let skipped = min(remaining, bytes.count - offset)
                offset += skipped
                stage = skipped == remaining ? .frameEnd : .body(remaining: remaining - skipped)
            case .frameEnd:
                guard bytes[offset] == Self.frameEndOctet else {
                    return fail(.frameError("a frame did not end with the frame-end octet"), validPrefix: frameStart)
                }
                offset += 1
                stage = .frameHeader
            }
        }
        if case .failed(let violation) = stage { return violation }
        return nil
    }

    private mutating func fail(_ violation: ProtocolViolation, validPrefix: Int) -> ProtocolViolation {
        self.validPrefix = validPrefix
        stage = .failed(violation)
        gathered.removeAll()
        return violation
    }

    /// Runs `body` on the next `count` bytes of the stream: in place when this read holds them
    /// all, else once they have been gathered across reads (`nil` until then).
    private mutating func withNext<Result>(
        _ count: Int, of bytes: UnsafeRawBufferPointer, at offset: inout Int,
        _ body: (UnsafeRawBufferPointer) -> Result
    ) -> Result? {
        if gathered.isEmpty && bytes.count - offset >= count {
            defer { offset += count }
            return body(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]))
        }
        let taken = min(count - gathered.count, bytes.count - offset)
        gathered.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + taken]))
        offset += taken
        guard gathered.count == count else { return nil }
        defer { gathered.removeAll(keepingCapacity: true) }
        return gathered.withUnsafeBytes(body)
    }

    // MARK: Frames

    static let methodFrame: UInt8 = 1
    static let headerFrame: UInt8 = 2
    static let bodyFrame: UInt8 = 3
    static let heartbeatFrame: UInt8 = 8
    static let frameEndOctet: UInt8 = 0xCE

    private func checkFrameHeader(type: UInt8, channel: UInt16, size: Int, isOpen: (UInt16) -> Bool) -> ProtocolViolation? {
        guard size + 8 <= limits.frameMax else {
            return .frameError("a frame of \(size) bytes is larger than the negotiated frame_max (\(limits.frameMax))")
        }
        switch type {
        case Self.methodFrame:
            break
        case Self.headerFrame, Self.bodyFrame:
            if channel == 0 { return .channelError("a content frame on channel 0") }
        case Self.heartbeatFrame:
            if channel != 0 { return .channelError("a heartbeat on channel \(channel)") }
            return size == 0 ? nil : .frameError("a heartbeat with a payload")
        default:
            return .frameError("a frame of unknown type \(type)")
        }
        if channel != 0 && !isOpen(channel) {
            return .channelError("a frame on channel \(channel), which the client has not opened")
        }
        return nil
    }

    /// A method the client may receive: the replies to what it sends and the broker's own
    /// notifications. librabbitmq would decode any method, field tables included.
    private static func checkMethod(_ payload: UnsafeRawBufferPointer, channel: UInt16, limits: Limits)
        -> ProtocolViolation?
    {
        guard payload.count >= 4 else { return .syntaxError("a method frame without a method") }
        let classID = UInt16(payload[0]) << 8 | UInt16(payload[1])
        let methodID = UInt16(payload[2]) << 8 | UInt16(payload[3])
        guard isAccepted(classID: classID, methodID: methodID) else {
            return .commandInvalid("method \(classID).\(methodID), which a broker does not send to a client")
        }
        if (classID == 10) != (channel == 0) {
            return .channelError("method \(classID).\(methodID) on channel \(channel)")
        }
        if classID == 10 && methodID == 10 {
            // connection.start: version (2 bytes), then the server properties table.
            return checkTable(payload, at: 6, "the server properties", limits: limits)
        }
        return nil
    }

    /// The methods a client may receive (AMQP 0-9-1 with RabbitMQ's extensions). A switch, not a
    /// set: it runs for every method frame.
    private static func isAccepted(classID: UInt16, methodID: UInt16) -> Bool {
        switch (classID, methodID) {
        case (10, 10), (10, 20), (10, 30), (10, 41), (10, 50), (10, 51), (10, 60), (10, 61):
            true  // connection: start, secure, tune, open-ok, close, close-ok, blocked, unblocked
        case (20, 11), (20, 20), (20, 21), (20, 40), (20, 41):
            true  // channel: open-ok, flow, flow-ok, close, close-ok
        case (40, 11), (40, 21), (40, 31), (40, 51):
            true  // exchange: declare-ok, delete-ok, bind-ok, unbind-ok
        case (50, 11), (50, 21), (50, 31), (50, 41), (50, 51):
            true  // queue: declare-ok, bind-ok, purge-ok, delete-ok, unbind-ok
        case (60, 11), (60, 21), (60, 30), (60, 31), (60, 50), (60, 60), (60, 71), (60, 72), (60, 80), (60, 111), (60, 120):
            true  // basic: qos-ok, consume-ok, cancel, cancel-ok, return, deliver, get-ok, get-empty, ack, recover-ok, nack
        case (85, 11), (90, 11), (90, 21), (90, 31):
            true  // confirm.select-ok; tx: select-ok, commit-ok, rollback-ok
        default:
            false
        }
    }

    /// A content header: class `basic`, a body size within the limit, one property-flag word,
    /// and each property present where librabbitmq's decoder will look for it, the headers
    /// table of bounded depth and size.
    private static func checkContentHeader(_ payload: UnsafeRawBufferPointer, limits: Limits) -> ProtocolViolation? {
        guard payload.count >= 14 else { return .syntaxError("a content header shorter than 14 bytes") }
        let classID = UInt16(payload[0]) << 8 | UInt16(payload[1])
        guard classID == 60 else { return .unexpectedFrame("a content header of class \(classID), not basic (60)") }
        var bodySize: UInt64 = 0
        for index in 4..<12 { bodySize = bodySize << 8 | UInt64(payload[index]) }
        guard bodySize <= limits.maximumMessageSize else {
            return .frameError(
                "a message of \(bodySize) bytes, over the maximum message size (\(limits.maximumMessageSize))")
        }
        let flags = UInt16(payload[12]) << 8 | UInt16(payload[13])
        // Bit 0 continues the flags in another word. `basic` has 14 properties, all in the first
        // word; librabbitmq 0.11 would read more words and then decode the properties after them,
        // where this check would not look (newer librabbitmq refuses them too).
        guard flags & 0x0001 == 0 else {
            return .syntaxError("a content header with more than one property-flag word")
        }
        // Walk the properties in the order librabbitmq decodes them (amqp_framing.c).
        var offset = 14
        for property in Self.basicProperties where flags & property.flag != 0 {
            switch property.encoding {
            case .octet: offset += 1
            case .longLong: offset += 8
            case .shortString:
                guard offset < payload.count else { return .syntaxError("a truncated content header") }
                offset += 1 + Int(payload[offset])
            case .table:
                if let violation = checkTable(payload, at: offset, "the message headers", limits: limits) {
                    return violation
                }
                offset += 4 + (Int(payload[offset]) << 24 | Int(payload[offset + 1]) << 16 | Int(payload[offset + 2]) << 8
                    | Int(payload[offset + 3]))
            }
            guard offset <= payload.count else { return .syntaxError("a truncated content header") }
        }
        return nil
    }

    private enum PropertyEncoding {
        case shortString, table, octet, longLong
    }

    /// `basic`'s properties, in the order of their flags (bit 15 down to bit 2).
    private static let basicProperties: [(flag: UInt16, encoding: PropertyEncoding)] = [
        (0x8000, .shortString),  // content-type
        (0x4000, .shortString),  // content-encoding
        (0x2000, .table),  // headers
        (0x1000, .octet),  // delivery-mode
        (0x0800, .octet),  // priority
        (0x0400, .shortString),  // correlation-id
        (0x0200, .shortString),  // reply-to
        (0x0100, .shortString),  // expiration
        (0x0080, .shortString),  // message-id
        (0x0040, .longLong),  // timestamp
        (0x0020, .shortString),  // type
        (0x0010, .shortString),  // user-id
        (0x0008, .shortString),  // app-id
        (0x0004, .shortString),  // cluster-id
    ]

    /// Checks that the field table at `start` is well-formed, nests at most
    /// ``Limits/maximumTableDepth`` deep and holds at most ``Limits/maximumTableEntries`` values,
    /// without recursion.
    private static func checkTable(_ payload: UnsafeRawBufferPointer, at start: Int, _ what: String, limits: Limits)
        -> ProtocolViolation?
    {
        switch FieldTableScanner.scan(
            payload, tableAt: start, maximumDepth: limits.maximumTableDepth, maximumEntries: limits.maximumTableEntries)
        {
        case .valid: nil
        case .tooDeep: .syntaxError("\(what) nest tables or arrays more than \(limits.maximumTableDepth) deep")
        case .tooManyEntries: .syntaxError("\(what) hold more than \(limits.maximumTableEntries) values")
        case .malformed(let reason): .syntaxError("\(what) are malformed: \(reason)")
        }
    }
}
