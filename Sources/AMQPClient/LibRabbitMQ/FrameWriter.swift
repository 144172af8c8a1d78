#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CRabbitMQ

/// Encodes outgoing frames into one buffer and writes it to the socket in as few `send` calls
/// as possible: a batch of publishes and acks costs one system call, where librabbitmq's
/// `amqp_basic_publish` makes three per message (method, header, body).
///
/// The methods and properties are encoded by librabbitmq's own encoders
/// (`amqp_encode_method`, `amqp_encode_properties`); only the framing (type, channel, size,
/// frame end) is written here. ``flush(to:limits:)`` always writes the whole buffer, so
/// frames never interleave with the ones librabbitmq writes itself (heartbeats). Used only on
/// the connection's I/O thread.
final class FrameWriter {
    private static let headerSize = 7  // type (1), channel (2), payload size (4)
    private static let frameEnd: UInt8 = 0xCE
    /// Flush once this much is buffered, so a long batch does not hold memory or delay the first frame.
    static let flushThreshold = 128 * 1024

    /// Scratch memory for the C structs of the method or publish being encoded.
    private let pool = CPool()
    private var storage: UnsafeMutableRawPointer
    private var capacity: Int
    private(set) var count = 0
    /// The negotiated frame_max: the largest frame, header and frame end included.
    var frameMax = Int(AMQP_DEFAULT_FRAME_SIZE)

    /// Room for a frame_max-sized frame, and a batch of small ones, without growing.
    private static let initialCapacity = 256 * 1024

    init() {
        capacity = Self.initialCapacity
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
    }

    deinit {
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    /// Drops what was buffered (the connection it was meant for is gone).
    func discard() {
        count = 0
    }

    /// Appends a method frame. Returns librabbitmq's status: an error when the arguments do not
    /// fit in a frame.
    func append(_ method: ClientMethod, channel: UInt16) -> LibraryStatus {
        let status = method.encode(into: self, channel: channel, pool: pool)
        pool.recycle()
        return LibraryStatus(status)
    }

    /// Appends a publish: its method, content header and body frames. When the properties do
    /// not fit in a frame, nothing of it stays buffered (a method frame without its header would
    /// break the connection). Returns librabbitmq's status.
    func appendPublish(_ request: PublishRequest, channel: UInt16) -> LibraryStatus {
        var properties = pool.properties(request.properties)
        var method = amqp_basic_publish_t(
            ticket: 0, exchange: pool.bytes(request.exchange), routing_key: pool.bytes(request.routingKey),
            mandatory: request.mandatory ? 1 : 0, immediate: 0)
        let mark = count
        var status = appendMethod(channel: channel, id: AMQP_BASIC_PUBLISH_METHOD, decoded: &method)
        if status == AMQP_STATUS_OK.rawValue {
            status = appendHeader(channel: channel, properties: &properties, bodySize: request.body.count)
        }
        pool.recycle()
        guard status == AMQP_STATUS_OK.rawValue else {
            count = mark
            return LibraryStatus(status)
        }
        request.body.withUnsafeBytes { appendBody(channel: channel, $0) }
        return .ok
    }

    // MARK: Encoding

    /// Appends a method frame whose C struct `decoded` is already built.
    func appendMethod(channel: UInt16, id: amqp_method_number_t, decoded: UnsafeMutableRawPointer) -> Int32 {
        reserve(frameMax)
        let start = count
        let payload = storage + start + Self.headerSize
        store32(id, at: payload)
        let available = frameMax - Self.headerSize - 1 - 4
        let encoded = amqp_encode_method(id, decoded, amqp_bytes_t(len: available, bytes: payload + 4))
        guard encoded >= 0 else { return encoded }
        finishFrame(type: UInt8(AMQP_FRAME_METHOD), channel: channel, at: start, payloadSize: Int(encoded) + 4)
        return AMQP_STATUS_OK.rawValue
    }

    /// Appends the content header frame of a `basic` message.
    func appendHeader(channel: UInt16, properties: UnsafeMutablePointer<amqp_basic_properties_t>, bodySize: Int) -> Int32 {
        reserve(frameMax)
        let start = count
        let payload = storage + start + Self.headerSize
        store16(UInt16(AMQP_BASIC_CLASS), at: payload)
        store16(0, at: payload + 2)  // weight
        store64(UInt64(bodySize), at: payload + 4)
        let available = frameMax - Self.headerSize - 1 - 12
        let encoded = amqp_encode_properties(
            UInt16(AMQP_BASIC_CLASS), properties, amqp_bytes_t(len: available, bytes: payload + 12))
        guard encoded >= 0 else { return encoded }
        finishFrame(type: UInt8(AMQP_FRAME_HEADER), channel: channel, at: start, payloadSize: Int(encoded) + 12)
        return AMQP_STATUS_OK.rawValue
    }

    /// Appends a heartbeat frame: type 8 on channel 0, no payload.
    func appendHeartbeat() {
        reserve(Self.headerSize + 1)
        finishFrame(type: UInt8(AMQP_FRAME_HEARTBEAT), channel: 0, at: count, payloadSize: 0)
    }

    /// Appends the body, split into as many body frames as frame_max requires.
    func appendBody(channel: UInt16, _ body: UnsafeRawBufferPointer) {
        let largestFragment = frameMax - Self.headerSize - 1
        var offset = 0
        while offset < body.count {
            let fragment = min(largestFragment, body.count - offset)
            reserve(Self.headerSize + fragment + 1)
            let start = count
            (storage + start + Self.headerSize).copyMemory(from: body.baseAddress! + offset, byteCount: fragment)
            finishFrame(type: UInt8(AMQP_FRAME_BODY), channel: channel, at: start, payloadSize: fragment)
            offset += fragment
        }
    }

    private func finishFrame(type: UInt8, channel: UInt16, at start: Int, payloadSize: Int) {
        let frame = storage + start
        frame.storeBytes(of: type, as: UInt8.self)
        store16(channel, at: frame + 1)
        store32(UInt32(payloadSize), at: frame + 3)
        (frame + Self.headerSize + payloadSize).storeBytes(of: Self.frameEnd, as: UInt8.self)
        count = start + Self.headerSize + payloadSize + 1
    }

    private func reserve(_ bytes: Int) {
        guard count + bytes > capacity else { return }
        var newCapacity = capacity * 2
        while count + bytes > newCapacity { newCapacity *= 2 }
        let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        grown.copyMemory(from: storage, byteCount: count)
        storage.deallocate()
        storage = grown
        capacity = newCapacity
    }

    private func store16(_ value: UInt16, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: value.bigEndian, toByteOffset: 0, as: UInt16.self)
    }

    private func store32(_ value: UInt32, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: value.bigEndian, toByteOffset: 0, as: UInt32.self)
    }

    private func store64(_ value: UInt64, at pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: value.bigEndian, toByteOffset: 0, as: UInt64.self)
    }

    // MARK: Writing

    /// How long a write may wait for the peer to read.
    struct WriteLimits {
        /// No progress for this long: the peer stopped reading.
        var stall: Duration
        /// Readable once the application closes the connection (-1: none); from then on a write
        /// waits at most ``afterClose``, so closing never waits out a stalled peer.
        var closeSignal: Int32 = -1
        var afterClose: Duration = .seconds(5)
    }

    /// Writes everything buffered through `transport` (non-blocking), waiting for room while
    /// the peer reads. Returns `.timeout` after ``WriteLimits/stall`` without progress (a peer
    /// that stopped reading), or ``WriteLimits/afterClose`` after the close signal.
    func flush(to transport: Transport, limits: WriteLimits) -> LibraryStatus {
        var written = 0
        var closeSignal = limits.closeSignal
        // Set when a write first has to wait (most flushes never do), and again after progress.
        var deadline: ContinuousClock.Instant?
        var closingDeadline: ContinuousClock.Instant?
        defer {
            count = 0
            // A one-off large batch should not pin its memory.
            if capacity > 4 * 1024 * 1024 { shrink() }
        }
        while written < count {
            switch transport.send(UnsafeRawBufferPointer(start: storage + written, count: count - written)) {
            case .sent(let sent):
                written += sent
                deadline = closingDeadline
            case .wouldBlock(let events):
                let now = ContinuousClock.now
                let remaining = now.duration(to: deadline ?? now + limits.stall)
                deadline = now + remaining
                if remaining <= .zero { return .timeout }
                // A tuple, not an array: no allocation for a wait.
                var descriptors = (
                    pollfd(fd: transport.socket, events: events, revents: 0),
                    pollfd(fd: closeSignal, events: Int16(POLLIN), revents: 0)  // poll skips -1
                )
                let ready = withUnsafeMutableBytes(of: &descriptors) {
                    poll($0.baseAddress!.assumingMemoryBound(to: pollfd.self), 2, Int32(clamping: remaining.milliseconds + 1))
                }
                if ready < 0 && errno != EINTR { return .socketError }
                // Not writable for the whole wait: the peer stopped reading (a send now might
                // squeeze a little more into buffers the kernel grew meanwhile; that is no reader).
                if ready == 0 && ContinuousClock.now >= deadline! { return .timeout }
                if descriptors.1.revents != 0 {
                    // The close was asked for: the signal stays readable, so stop watching it.
                    closeSignal = -1
                    let closing = ContinuousClock.now + limits.afterClose
                    closingDeadline = closing
                    deadline = min(deadline ?? closing, closing)
                }
            case .failed:
                return .socketError
            }
        }
        return .ok
    }

    /// Writes what the transport takes without waiting. Returns whether everything went; what
    /// did not stays buffered, from its first unwritten byte, for ``flush(to:limits:)``
    /// (under TLS the same bytes must be offered again, which they are). A failure also leaves
    /// the bytes buffered: the flush that follows reports it.
    func sendWithoutWaiting(to transport: Transport) -> Bool {
        var written = 0
        sending: while written < count {
            switch transport.send(UnsafeRawBufferPointer(start: storage + written, count: count - written)) {
            case .sent(let sent): written += sent
            case .wouldBlock, .failed: break sending
            }
        }
        if written == count {
            count = 0
            return true
        }
        memmove(storage, storage + written, count - written)  // the regions may overlap
        count -= written
        return false
    }

    private func shrink() {
        storage.deallocate()
        capacity = Self.initialCapacity
        storage = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
    }
}
