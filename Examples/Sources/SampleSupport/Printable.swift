import AMQPClient

/// `text` fit for a terminal. Whatever came in a message (its body, routing key, headers, an
/// event's fields) is the sender's text: an escape sequence in it would drive the terminal, a line
/// break would forge an output line, a bidi override would show it reversed. The samples print
/// such text through this, escaped as the client's logs escape the broker's, and cut after
/// `limit` characters (`nil`: never).
public func printable(_ text: some StringProtocol, limit: Int? = 256) -> String {
    LogText.escaped(String(text), limit: limit)
}
