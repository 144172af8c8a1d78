import Testing

@testable import AMQPClient

@Suite("Channel: assembling messages from method, header and body frames")
struct ContentAssemblyTests {
    @Test("a body split over several frames is assembled whole")
    func multiFrameBody() throws {
        var assembly = ContentAssembly()
        try assembly.start(.delivery(consumerTag: "c"), deliveryTag: 7, redelivered: true, exchange: "x", routingKey: "k")
        #expect(try assembly.header(properties: AMQPProperties(messageID: "m1"), bodySize: 10) == nil)
        let parts: [[UInt8]] = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
        var completed: ContentAssembly.Completed?
        for (index, part) in parts.enumerated() {
            completed = try part.withUnsafeBytes { try assembly.body($0) }
            if index < parts.count - 1 { #expect(completed == nil) }
        }
        #expect(completed?.body == (0...9).map { UInt8($0) })
        #expect(completed?.deliveryTag == 7)
        #expect(completed?.redelivered == true)
        #expect(completed?.routingKey == "k")
        #expect(completed?.properties.messageID == "m1")
    }

    @Test("a large body in many frames ends in a buffer of about its size, not twice it (the 128 MiB test's twin)")
    func largeBodyBuffer() throws {
        var assembly = ContentAssembly()
        // Just past a power-of-two run of frames (and past the allocator's page rounding), where an
        // array that grows by doubling would end at almost twice the size.
        let size = 4 * (128 * 1024 - 8) + 10_000
        try assembly.start(.delivery(consumerTag: "c"), deliveryTag: 1, redelivered: false, exchange: "", routingKey: "k")
        _ = try assembly.header(properties: AMQPProperties(), bodySize: size)
        let frame = [UInt8](repeating: 7, count: 128 * 1024 - 8)
        var completed: ContentAssembly.Completed?
        var sent = 0
        while sent < size {
            let count = min(frame.count, size - sent)
            completed = try frame[0..<count].withUnsafeBytes { try assembly.body($0) }
            sent += count
        }
        let body = try #require(completed?.body)
        #expect(body.count == size)
        #expect(body.capacity <= size + size / 4, "capacity \(body.capacity) for a body of \(size)")
    }

    @Test("an empty body completes at the header; a body in one frame is taken at once")
    func emptyAndSingleFrame() throws {
        var assembly = ContentAssembly()
        try assembly.start(.get(messageCount: 3), deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q")
        let empty = try assembly.header(properties: AMQPProperties(), bodySize: 0)
        #expect(empty?.body == [])
        if case .get(let count) = empty?.kind { #expect(count == 3) } else { Issue.record("not a get") }

        try assembly.start(.returned(replyCode: 312, replyText: "NO_ROUTE"), deliveryTag: 0, redelivered: false, exchange: "e", routingKey: "r")
        _ = try assembly.header(properties: AMQPProperties(), bodySize: 3)
        let whole = try [UInt8]([9, 8, 7]).withUnsafeBytes { try assembly.body($0) }
        #expect(whole?.body == [9, 8, 7])
    }

    @Test("frames out of sequence are protocol violations: a header or body with no message, a second message, too much body")
    func outOfSequence() throws {
        var assembly = ContentAssembly()
        #expect(throws: ProtocolViolation.self) { try assembly.header(properties: AMQPProperties(), bodySize: 0) }
        #expect(throws: ProtocolViolation.self) { try [UInt8]([1]).withUnsafeBytes { try assembly.body($0) } }

        try assembly.start(.delivery(consumerTag: "c"), deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q")
        #expect(throws: ProtocolViolation.self) { try [UInt8]([1]).withUnsafeBytes { try assembly.body($0) } }
        _ = try assembly.header(properties: AMQPProperties(), bodySize: 2)
        #expect(throws: ProtocolViolation.self) {
            try assembly.start(.delivery(consumerTag: "c"), deliveryTag: 2, redelivered: false, exchange: "", routingKey: "q")
        }
        #expect(throws: ProtocolViolation.self) { try [UInt8]([1, 2, 3]).withUnsafeBytes { try assembly.body($0) } }
    }
}
