/// Something the broker sent that breaks the AMQP protocol, found before it was acted on. The
/// connection cannot go on: it is closed and, like any lost connection, recovered.
struct ProtocolViolation: Error, Equatable, CustomStringConvertible {
    /// The AMQP reply code that names it: 501 FRAME_ERROR, 502 SYNTAX_ERROR, 503 COMMAND_INVALID,
    /// 504 CHANNEL_ERROR or 505 UNEXPECTED_FRAME.
    let replyCode: UInt16
    let description: String

    static func frameError(_ text: String) -> Self { .init(replyCode: 501, description: text) }
    static func syntaxError(_ text: String) -> Self { .init(replyCode: 502, description: text) }
    static func commandInvalid(_ text: String) -> Self { .init(replyCode: 503, description: text) }
    static func channelError(_ text: String) -> Self { .init(replyCode: 504, description: text) }
    static func unexpectedFrame(_ text: String) -> Self { .init(replyCode: 505, description: text) }

    /// The reply text AMQP gives the code.
    var replyText: String {
        switch replyCode {
        case 501: "FRAME_ERROR"
        case 502: "SYNTAX_ERROR"
        case 503: "COMMAND_INVALID"
        case 504: "CHANNEL_ERROR"
        default: "UNEXPECTED_FRAME"
        }
    }
}
