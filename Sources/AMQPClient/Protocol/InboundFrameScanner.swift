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
        var maximumTableDepth: Int = 100
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

    init(limits: Limits) {
        self.limits = limits
        gathered.reserveCapacity(256)
    }

    /// Checks the next bytes of the stream. `isOpen` tells whether a channel number is one the
    /// client opened and has not seen closed. Returns the first violation; after one, every
    /// later call returns it too.
    mutating func scan(_ bytes: UnsafeRawBufferPointer, isOpen: (UInt16) -> Bool) -> ProtocolViolation? {
        var offset = 0
        while offset < bytes.count {
            switch stage {
            case .failed(let violation):
                return violation
            case .streamStart:
                // "AMQP" followed by a version: a broker that refuses our protocol version says so.
                if bytes[offset] == UInt8(ascii: "A") || !gathered.isEmpty {
                    offset += gather(bytes, from: offset, upTo: 8)
                    guard gathered.count == 8 else { return nil }
                    gathered.removeAll(keepingCapacity: true)
                    stage = .frameHeader
                } else {
                    stage = .frameHeader
                }
            case .frameHeader:
                offset += gather(bytes, from: offset, upTo: 7)
                guard gathered.count == 7 else { return nil }
                let type = gathered[0]
                let channel = UInt16(gathered[1]) << 8 | UInt16(gathered[2])
                let size = Int(gathered[3]) << 24 | Int(gathered[4]) << 16 | Int(gathered[5]) << 8 | Int(gathered[6])
                gathered.removeAll(keepingCapacity: true)
                if let violation = checkFrameHeader(type: type, channel: channel, size: size, isOpen: isOpen) {
                    stage = .failed(violation)
                    return violation
                }
                switch type {
                case Self.methodFrame, Self.headerFrame: stage = .payload(type: type, channel: channel, size: size)
                case Self.bodyFrame: stage = size > 0 ? .body(remaining: size) : .frameEnd
                default: stage = .frameEnd  // heartbeat: no payload
                }
            case .payload(let type, let channel, let size):
                offset += gather(bytes, from: offset, upTo: size)
                guard gathered.count == size else { return nil }
                let violation =
                    type == Self.methodFrame
                    ? checkMethod(channel: channel) : checkContentHeader(channel: channel)
                gathered.removeAll(keepingCapacity: true)
                if let violation {
                    stage = .failed(violation)
                    return violation
                }
                stage = .frameEnd
            case .body(let remaining):
                let take = min(remaining, bytes.count - offset)
                offset += take
                stage = take == remaining ? .frameEnd : .body(remaining: remaining - take)
            case .frameEnd:
                guard bytes[offset] == Self.frameEndOctet else {
                    let violation = ProtocolViolation.frameError("a frame did not end with the frame-end octet")
                    stage = .failed(violation)
                    return violation
                }
                offset += 1
                stage = .frameHeader
            }
        }
        if case .failed(let violation) = stage { return violation }
        return nil
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
    private func checkMethod(channel: UInt16) -> ProtocolViolation? {
        guard gathered.count >= 4 else { return .syntaxError("a method frame without a method") }
        let classID = UInt16(gathered[0]) << 8 | UInt16(gathered[1])
        let methodID = UInt16(gathered[2]) << 8 | UInt16(gathered[3])
        guard let accepted = Self.acceptedMethods[classID], accepted.contains(methodID) else {
            return .commandInvalid("method \(classID).\(methodID), which a broker does not send to a client")
        }
        if (classID == 10) != (channel == 0) {
            return .channelError("method \(classID).\(methodID) on channel \(channel)")
        }
        if classID == 10 && methodID == 10 {
            // connection.start: version (2 bytes), then the server properties table.
            return checkTable(at: 6, "the server properties")
        }
        return nil
    }

    /// Class → methods a client may receive (AMQP 0-9-1 with RabbitMQ's extensions).
    private static let acceptedMethods: [UInt16: Set<UInt16>] = [
        10: [10, 20, 30, 41, 50, 51, 60, 61],  // connection: start, secure, tune, open-ok, close, close-ok, blocked, unblocked
        20: [11, 20, 21, 40, 41],  // channel: open-ok, flow, flow-ok, close, close-ok
        40: [11, 21, 31, 51],  // exchange: declare-ok, delete-ok, bind-ok, unbind-ok
        50: [11, 21, 31, 41, 51],  // queue: declare-ok, bind-ok, purge-ok, delete-ok, unbind-ok
        60: [11, 21, 30, 31, 50, 60, 71, 72, 80, 111, 120],  // basic: qos-ok, consume-ok, cancel, cancel-ok, return, deliver, get-ok, get-empty, ack, recover-ok, nack
        85: [11],  // confirm: select-ok
        90: [11, 21, 31],  // tx: select-ok, commit-ok, rollback-ok
    ]

    /// A content header: class `basic`, a body size within the limit, and a headers table of
    /// bounded depth.
    private func checkContentHeader(channel: UInt16) -> ProtocolViolation? {
        guard gathered.count >= 14 else { return .syntaxError("a content header shorter than 14 bytes") }
        let classID = UInt16(gathered[0]) << 8 | UInt16(gathered[1])
        guard classID == 60 else { return .unexpectedFrame("a content header of class \(classID), not basic (60)") }
        let bodySize = gathered[4..<12].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard bodySize <= limits.maximumMessageSize else {
            return .frameError(
                "a message of \(bodySize) bytes, over the maximum message size (\(limits.maximumMessageSize))")
        }
        let flags = UInt16(gathered[12]) << 8 | UInt16(gathered[13])
        guard flags & 0x2000 != 0 else { return nil }  // no headers table
        // Skip content-type and content-encoding (short strings) to reach the headers table.
        var offset = 14
        for flag: UInt16 in [0x8000, 0x4000] where flags & flag != 0 {
            guard offset < gathered.count else { return .syntaxError("a truncated content header") }
            offset += 1 + Int(gathered[offset])
        }
        return checkTable(at: offset, "the message headers")
    }

    /// Checks that the field table at `start` is well-formed and nests at most
    /// ``Limits/maximumTableDepth`` deep, without recursion.
    private func checkTable(at start: Int, _ what: String) -> ProtocolViolation? {
        switch FieldTableScanner.scan(gathered, tableAt: start, maximumDepth: limits.maximumTableDepth) {
        case .valid: nil
        case .tooDeep: .syntaxError("\(what) nest tables or arrays more than \(limits.maximumTableDepth) deep")
        case .malformed(let reason): .syntaxError("\(what) are malformed: \(reason)")
        }
    }

    /// Appends bytes to `gathered` until it holds `count`; returns how many it took.
    private mutating func gather(_ bytes: UnsafeRawBufferPointer, from offset: Int, upTo count: Int) -> Int {
        let take = min(count - gathered.count, bytes.count - offset)
        gathered.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + take]))
        return take
    }
}
