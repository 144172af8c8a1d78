import AMQPClient
import Testing

@testable import AMQPEvents

@Suite("EventError: text from the broker or a message in descriptions")
struct EventErrorDescriptionTests {
    /// A terminal escape sequence, a forged line and a right-to-left override.
    static let hostile = "bad\u{1B}[2J\r\n[info] forged \u{202E}txt.exe"

    static func isRaw(_ text: String) -> Bool {
        text.unicodeScalars.contains { ["\u{1B}", "\r", "\n", "\u{202E}"].contains($0) }
    }

    @Test("a message quoting the broker or a responder, and the underlying error, are escaped once")
    func escaped() {
        let underlying = AMQPError(code: .channelClosed, message: Self.hostile, replyCode: 406, replyText: Self.hostile)
        let errors = [
            EventError.broker("declaring the topology", underlying),
            // A responder's error text comes in the reply message.
            EventError(code: .responderFailed, message: Self.hostile),
        ]
        for error in errors {
            for text in [error.description, "\(error)", String(reflecting: error)] {
                #expect(!Self.isRaw(text), "\(text.debugDescription)")
            }
            #expect(error.description.contains(#"bad\u{1b}[2J\r\n[info] forged \u{202e}txt.exe"#))
            #expect(!error.description.contains(#"\\"#))  // not escaped twice
        }
        #expect(errors[0].message == "declaring the topology: \(Self.hostile)")
    }

    @Test("an ordinary error reads as before")
    func ordinary() {
        let error = EventError(code: .timedOut, message: "no reply in time (is the responder running?)")
        #expect(error.description == "EventError.timedOut: no reply in time (is the responder running?)")
    }
}
