import SampleSupport
import Synchronization
import Testing
import Tracing

/// No broker needed: what the samples print of a message is escaped.
@Suite("Samples: a message's text is printed escaped")
struct SamplePrintingTests {
    /// What a hostile publisher could put in an order id, a routing key or a header: a terminal
    /// escape sequence, a forged line and a right-to-left override.
    static let hostile = "42\u{1B}[2J\r\n [payment] charged amount=0 \u{202E}txt.exe"

    static func isRaw(_ text: String) -> Bool {
        text.unicodeScalars.contains { ["\u{1B}", "\r", "\n", "\u{202E}"].contains($0) }
    }

    @Test("printable escapes control characters, line breaks and bidi overrides, leaves ordinary text, and cuts")
    func printableText() {
        #expect(printable(Self.hostile) == #"42\u{1b}[2J\r\n [payment] charged amount=0 \u{202e}txt.exe"#)
        #expect(printable("order-42 für Zoë") == "order-42 für Zoë")
        #expect(printable(String(repeating: "x", count: 1000)) == String(repeating: "x", count: 256) + "…")
        #expect(printable("abcdef", limit: 3) == "abc…")
    }

    @Test("--trace's span lines escape the operation, the message's attributes and the errors")
    func spanLine() throws {
        struct Failure: Error, CustomStringConvertible { var description: String { SamplePrintingTests.hostile } }
        let finished = Mutex<[W3CSpan.Finished]>([])
        let tracer = W3CTracer { span in finished.withLock { $0.append(span) } }
        let span = tracer.startSpan("process \(Self.hostile)", context: .topLevel, ofKind: .consumer)
        span.attributes["messaging.rabbitmq.destination.routing_key"] = Self.hostile
        span.recordError(Failure())
        span.end()
        let line = try #require(finished.withLock { $0.first }).description
        #expect(!Self.isRaw(line), "\(line.debugDescription)")
        #expect(line.contains(#"routing_key="42\u{1b}[2J\r\n"#))
    }
}
