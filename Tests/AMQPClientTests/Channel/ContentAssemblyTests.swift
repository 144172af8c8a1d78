import Testing

@testable import AMQPClient

@Suite("Channel: assembling messages from method, header and body frames")
struct ContentAssemblyTests {
    @Test("a body split over several frames is assembled whole")
    func multiFrameBody() {
        var assembly = ContentAssembly()
        assembly.start(.delivery(consumerTag: "c"), deliveryTag: 7, redelivered: true, exchange: "x", routingKey: "k")
        #expect(assembly.header(properties: AMQPProperties(messageID: "m1"), bodySize: 10) == nil)
        let parts: [[UInt8]] = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
        var completed: ContentAssembly.Completed?
        for (index, part) in parts.enumerated() {
            completed = part.withUnsafeBytes { assembly.body($0) }
            if index < parts.count - 1 { #expect(completed == nil) }
        }
        #expect(completed?.body == (0...9).map { UInt8($0) })
        #expect(completed?.deliveryTag == 7)
        #expect(completed?.redelivered == true)
        #expect(completed?.routingKey == "k")
        #expect(completed?.properties.messageID == "m1")
    }

    @Test("an empty body completes at the header; a body in one frame is taken at once")
    func emptyAndSingleFrame() {
        var assembly = ContentAssembly()
        assembly.start(.get(messageCount: 3), deliveryTag: 1, redelivered: false, exchange: "", routingKey: "q")
        let empty = assembly.header(properties: AMQPProperties(), bodySize: 0)
        #expect(empty?.body == [])
        if case .get(let count) = empty?.kind { #expect(count == 3) } else { Issue.record("not a get") }

        assembly.start(.returned(replyCode: 312, replyText: "NO_ROUTE"), deliveryTag: 0, redelivered: false, exchange: "e", routingKey: "r")
        _ = assembly.header(properties: AMQPProperties(), bodySize: 3)
        let whole = [UInt8]([9, 8, 7]).withUnsafeBytes { assembly.body($0) }
        #expect(whole?.body == [9, 8, 7])
    }

    @Test("a header or body with no message started is ignored")
    func strayFrames() {
        var assembly = ContentAssembly()
        #expect(assembly.header(properties: AMQPProperties(), bodySize: 0) == nil)
        #expect([UInt8]([1]).withUnsafeBytes { assembly.body($0) } == nil)
    }
}
