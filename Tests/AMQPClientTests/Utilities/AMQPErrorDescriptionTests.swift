import Foundation
import Logging
import Testing

@testable import AMQPClient

@Suite("Errors: text from the broker in descriptions")
struct AMQPErrorDescriptionTests {
    /// What a hostile broker would put in a reply text or a name: a terminal escape sequence (clear
    /// the screen, red), a forged line, and a right-to-left override that shows text reversed.
    static let hostile = "bad\u{1B}[2J\u{1B}[31m\r\n[info] forged line \u{202E}txt.exe"

    /// Whether `text` holds any of the hostile scalars raw.
    static func isRaw(_ text: String) -> Bool {
        text.unicodeScalars.contains { ["\u{1B}", "\r", "\n", "\u{202E}"].contains($0) }
    }

    /// Every way a program turns an error into text for a person.
    static func renderings(_ error: AMQPError) -> [String] {
        [
            error.description, String(describing: error), "\(error)", String(reflecting: error), "\([error])",
            "\(Optional(error) as Any)", (error as any Error).localizedDescription,
        ]
    }

    static let hostileErrors: [AMQPError] = [
        // In the reply text, as the broker closed a channel…
        AMQPError.channelClosedByBroker(channel: 1, replyCode: 406, replyText: hostile, classID: 0, methodID: 0),
        // …in the message, quoting names the broker sent back (a returned message)…
        AMQPError(
            code: .messageReturned,
            message: "the broker returned the message: no queue took it from exchange \"\(hostile)\" with routing key \"\(hostile)\"",
            replyCode: 312, replyText: "NO_ROUTE"),
        // …and in both, quoted again by an error made from another.
        AMQPError.outcomeUnknown(AMQPError(code: .connectionClosed, message: hostile, replyCode: 320, replyText: hostile)),
    ]

    @Test("an escape sequence, CR/LF and a bidi override from the broker never reach a description raw",
          arguments: hostileErrors)
    func hostileTextIsEscaped(_ error: AMQPError) {
        for text in Self.renderings(error) {
            #expect(!Self.isRaw(text), "\(text.debugDescription)")
        }
        #expect(error.description.contains(#"bad\u{1b}[2J\u{1b}[31m\r\n[info] forged line \u{202e}txt.exe"#))
    }

    @Test("the fields keep the broker's text as it sent it, for programs to match on")
    func fieldsStayRaw() {
        let error = AMQPError.channelClosedByBroker(channel: 1, replyCode: 406, replyText: Self.hostile, classID: 0, methodID: 0)
        #expect(error.replyText == Self.hostile)
        let quoting = AMQPError(code: .consumerCancelled, message: "the broker cancelled consumer \(Self.hostile)")
        #expect(quoting.message == "the broker cancelled consumer \(Self.hostile)")
    }

    @Test("an ordinary error reads as before")
    func ordinaryError() {
        let error = AMQPError(
            code: .channelClosed, message: "the broker closed channel 1 after AMQP_QUEUE_DECLARE_METHOD", replyCode: 404,
            replyText: "NOT_FOUND - no queue 'orders' in vhost '/'")
        #expect(
            error.description
                == "AMQPError.channelClosed: the broker closed channel 1 after AMQP_QUEUE_DECLARE_METHOD (404 NOT_FOUND - no queue 'orders' in vhost '/')")
        #expect("\(error)" == error.description)
        let lost = AMQPError(code: .connectionLost, message: "the broker stopped answering heartbeats", libraryStatus: -13)
        #expect(lost.description == "AMQPError.connectionLost: the broker stopped answering heartbeats [librabbitmq status -13]")
    }

    @Test("a long reply text or message is cut in the description, not in the fields")
    func bounded() {
        let long = String(repeating: "x", count: 5000)
        let error = AMQPError(code: .channelClosed, message: long, replyCode: 406, replyText: long)
        #expect(error.description.count < AMQPError.describedMessageLimit + LogText.limit + 100)
        #expect(error.description.hasSuffix(String(repeating: "x", count: LogText.limit) + "…)"))
        #expect(error.message.count == 5000 && error.replyText?.count == 5000)
    }

    @Test("the logs escape an error once, as before: not its escaped description again")
    func loggedOnce() {
        let error = AMQPError(code: .connectionClosed, message: "closed", replyCode: 320, replyText: "a\u{1B}b")
        #expect(Logger.MetadataValue.untrusted(error) == .string(#"AMQPError.connectionClosed: closed (320 a\u{1b}b)"#))
    }
}
