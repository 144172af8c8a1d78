import Testing

@testable import AMQPClient

/// Frames as bytes, for feeding the scanner.
enum Wire {
    static func frame(_ type: UInt8, _ channel: UInt16, _ payload: [UInt8], end: UInt8 = 0xCE) -> [UInt8] {
        [type] + be(channel) + be(UInt32(payload.count)) + payload + [end]
    }

    static func method(_ channel: UInt16, _ classID: UInt16, _ methodID: UInt16, _ arguments: [UInt8] = []) -> [UInt8] {
        frame(1, channel, be(classID) + be(methodID) + arguments)
    }

    static func header(_ channel: UInt16, bodySize: UInt64, classID: UInt16 = 60, flags: UInt16 = 0, _ properties: [UInt8] = [])
        -> [UInt8]
    {
        frame(2, channel, be(classID) + [0, 0] + be(bodySize) + be(flags) + properties)
    }

    static func shortString(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }

    static func table(_ entries: [UInt8]) -> [UInt8] { be(UInt32(entries.count)) + entries }

    /// A table nested `depth` deep.
    static func nestedTable(depth: Int) -> [UInt8] {
        var inner = table([])
        for _ in 1..<depth { inner = table(shortString("n") + [UInt8(ascii: "F")] + inner) }
        return inner
    }

    static func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }
}

@Suite("Protocol: the frame scanner refuses what a hostile broker sends")
struct InboundFrameScannerTests {
    static let limits = InboundFrameScanner.Limits(frameMax: 131_072, maximumMessageSize: 1 << 20)

    /// Feeds `bytes` in chunks of `chunk` bytes (1 splits every header and payload) with channels 0 and 1 open.
    static func scan(_ bytes: [UInt8], chunk: Int = .max, limits: InboundFrameScanner.Limits = limits) -> ProtocolViolation? {
        var scanner = InboundFrameScanner(limits: limits)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + min(chunk, bytes.count))
            let violation = bytes[offset..<end].withUnsafeBytes { scanner.scan($0) { $0 == 1 } }
            if let violation { return violation }
            offset = end
        }
        return nil
    }

    static let deliver = Wire.method(1, 60, 60, Wire.shortString("c") + Wire.be(UInt64(1)) + [0] + Wire.shortString("") + Wire.shortString("q"))

    @Test("a protocol header, a delivery with headers, and a heartbeat pass, however the reads split them", arguments: [1, 3, 7, 4096])
    func validStream(chunk: Int) {
        let headers = Wire.table(Wire.shortString("k") + [UInt8(ascii: "S")] + Wire.be(UInt32(2)) + Array("v1".utf8))
        let stream =
            Array("AMQP".utf8) + [0, 0, 9, 1] + Self.deliver
            + Wire.header(1, bodySize: 5, flags: 0x8000 | 0x2000, Wire.shortString("text/plain") + headers)
            + Wire.frame(3, 1, Array("hello".utf8)) + Wire.frame(8, 0, [])
        #expect(Self.scan(stream, chunk: chunk) == nil)
    }

    @Test("unknown frame types, unopened channels, oversized frames and bad frame ends are refused")
    func framing() {
        #expect(Self.scan(Wire.frame(9, 1, [1, 2, 3]))?.replyCode == 501)
        #expect(Self.scan(Wire.method(7, 20, 20, [1]))?.replyCode == 504)
        #expect(Self.scan(Wire.frame(3, 0, [1]))?.replyCode == 504)
        #expect(Self.scan(Wire.frame(8, 1, []))?.replyCode == 504)
        #expect(Self.scan([1, 0, 1] + Wire.be(UInt32(10_000_000)))?.replyCode == 501)
        #expect(Self.scan(Wire.frame(1, 1, Wire.be(UInt16(20)) + Wire.be(UInt16(20)) + [1], end: 0))?.replyCode == 501)
    }

    @Test("only methods a broker sends to a client, on the right channel")
    func methods() {
        #expect(Self.scan(Wire.method(1, 60, 40))?.replyCode == 503)  // basic.publish
        #expect(Self.scan(Wire.method(1, 50, 10))?.replyCode == 503)  // queue.declare
        #expect(Self.scan(Wire.method(1, 10, 50))?.replyCode == 504)  // connection.close on a channel
        #expect(Self.scan(Wire.method(0, 60, 80))?.replyCode == 504)  // basic.ack on channel 0
        #expect(Self.scan(Wire.frame(1, 1, [0, 60]))?.replyCode == 502)  // no room for a method id
    }

    @Test("content headers: class basic, a body within the maximum size, headers nested at most 100 deep")
    func contentHeaders() {
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 4, classID: 10))?.replyCode == 505)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1 << 62))?.replyCode == 501)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1 << 20)) == nil)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: 0x2000, Wire.nestedTable(depth: 100))) == nil)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: 0x2000, Wire.nestedTable(depth: 101)))?.replyCode == 502)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: 0x2000, [0, 0, 0, 9, 1]))?.replyCode == 502)
    }

    @Test("a second property-flag word is refused: librabbitmq 0.11 would decode headers where the check never looked")
    func continuationFlags() {
        // Flags 0x2001 0x0000, then a headers table librabbitmq would read after both words.
        let hidden = Wire.be(UInt16(0)) + Wire.nestedTable(depth: 5000)
        let header = Wire.frame(2, 1, Wire.be(UInt16(60)) + [0, 0] + Wire.be(UInt64(1)) + Wire.be(UInt16(0x2001)) + hidden)
        #expect(Self.scan(Self.deliver + header)?.replyCode == 502)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: 0x0001, [0, 0]))?.replyCode == 502)
    }

    @Test("every property is walked where librabbitmq decodes it: the headers after a content type and a truncated id are found")
    func propertyWalk() {
        let deep = Wire.nestedTable(depth: 101)
        let flags: UInt16 = 0x8000 | 0x4000 | 0x2000
        let properties = Wire.shortString("text/plain") + Wire.shortString("gzip") + deep
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: flags, properties))?.replyCode == 502)
        let all: UInt16 = 0xFFFC
        var every = Wire.shortString("t") + Wire.shortString("e") + Wire.table([]) + [2, 5]
        every += (0..<4).flatMap { _ in Wire.shortString("id") } + Wire.be(UInt64(42))
        every += (0..<4).flatMap { _ in Wire.shortString("x") }
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: all, every)) == nil)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: all, Array(every.dropLast(2))))?.replyCode == 502)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: 0x0400, [200, 1, 2]))?.replyCode == 502)
    }

    @Test("a table holds at most 10,000 values, those nested in it included")
    func tableEntries() {
        let voids = { (count: Int) in
            Wire.table(Wire.shortString("a") + [UInt8(ascii: "A")] + Wire.be(UInt32(count)) + [UInt8](repeating: UInt8(ascii: "V"), count: count))
        }
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: 0x2000, voids(9_999))) == nil)
        #expect(Self.scan(Self.deliver + Wire.header(1, bodySize: 1, flags: 0x2000, voids(10_000)))?.replyCode == 502)
    }

    @Test("the whole frames before a refused one are handed on: a consume-ok in the same read as a violation still counts")
    func validPrefix() {
        var scanner = InboundFrameScanner(limits: Self.limits)
        let consumeOk = Wire.method(1, 60, 21, Wire.shortString("tag"))
        let stream = consumeOk + Wire.frame(8, 0, []) + Wire.frame(9, 1, [1, 2, 3])
        let violation = stream.withUnsafeBytes { scanner.scan($0) { $0 == 1 } }
        #expect(violation?.replyCode == 501)
        #expect(scanner.validPrefix == consumeOk.count + 8)
        // A frame split across reads: the part in an earlier read is not counted again.
        var split = InboundFrameScanner(limits: Self.limits)
        let bad = Wire.frame(1, 1, Wire.be(UInt16(20)) + Wire.be(UInt16(20)) + [1], end: 0)
        #expect(Array(bad.prefix(3)).withUnsafeBytes { split.scan($0) { $0 == 1 } } == nil)
        #expect(Array(bad.dropFirst(3)).withUnsafeBytes { split.scan($0) { $0 == 1 } } != nil)
        #expect(split.validPrefix == 0)
    }

    @Test("the server properties of connection.start are checked too")
    func serverProperties() {
        let start = { (properties: [UInt8]) in
            Wire.method(0, 10, 10, [0, 9] + properties + Wire.be(UInt32(5)) + Array("PLAIN".utf8) + Wire.be(UInt32(0)))
        }
        #expect(Self.scan(start(Wire.table([]))) == nil)
        #expect(Self.scan(start(Wire.table(Wire.shortString("n") + [UInt8(ascii: "F")] + Wire.nestedTable(depth: 200))))?.replyCode == 502)
    }

    @Test("after a violation, nothing more is accepted")
    func sticky() {
        var scanner = InboundFrameScanner(limits: Self.limits)
        let bad = Wire.frame(9, 1, [])
        let first = bad.withUnsafeBytes { scanner.scan($0) { _ in true } }
        let second = Wire.frame(8, 0, []).withUnsafeBytes { scanner.scan($0) { _ in true } }
        #expect(first != nil)
        #expect(second == first)
    }
}

@Suite("Protocol: walking field tables without recursion")
struct FieldTableScannerTests {
    @Test("every field type is walked; lengths beyond the table are malformed")
    func fieldTypes() {
        var entries: [UInt8] = []
        for (type, size) in [("t", 1), ("b", 1), ("B", 1), ("s", 2), ("u", 2), ("I", 4), ("i", 4), ("l", 8), ("L", 8), ("f", 4), ("d", 8), ("T", 8), ("D", 5), ("V", 0)] {
            entries += Wire.shortString(type) + [UInt8(ascii: Unicode.Scalar(type)!)] + [UInt8](repeating: 0, count: size)
        }
        entries += Wire.shortString("S") + [UInt8(ascii: "S")] + Wire.be(UInt32(3)) + [1, 2, 3]
        entries += Wire.shortString("A") + [UInt8(ascii: "A")] + Wire.be(UInt32(2)) + [UInt8(ascii: "t"), 1]
        #expect(FieldTableScanner.scan(Wire.table(entries), tableAt: 0, maximumDepth: 100) == .valid)
        #expect(FieldTableScanner.scan(Wire.be(UInt32(100)) + [1], tableAt: 0, maximumDepth: 100) != .valid)
        let longString = Wire.table(Wire.shortString("S") + [UInt8(ascii: "S")] + Wire.be(UInt32(1000)))
        #expect(FieldTableScanner.scan(longString, tableAt: 0, maximumDepth: 100) != .valid)
        #expect(FieldTableScanner.scan(Wire.table(Wire.shortString("?") + [UInt8(ascii: "?")]), tableAt: 0, maximumDepth: 100) != .valid)
    }

    @Test("arrays count toward the depth like tables")
    func arrayDepth() {
        var value: [UInt8] = [UInt8(ascii: "V")]
        for _ in 0..<150 { value = [UInt8(ascii: "A")] + Wire.be(UInt32(value.count)) + value }
        let table = Wire.table(Wire.shortString("a") + value)
        #expect(FieldTableScanner.scan(table, tableAt: 0, maximumDepth: 100) == .tooDeep)
        #expect(FieldTableScanner.scan(table, tableAt: 0, maximumDepth: 200) == .valid)
    }
}
