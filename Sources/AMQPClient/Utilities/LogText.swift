import Logging

extension Logger.MetadataValue {
    /// Text that came from the broker (reply texts, names, errors that quote them), fit for a
    /// log line: control characters escaped and at most ``LogText/limit`` characters, so that a
    /// misbehaving broker can neither forge log lines nor make them huge.
    static func untrusted(_ value: Any) -> Self {
        .string(LogText.untrusted(value))
    }
}

/// Escapes text that came from the broker or the network before a person sees it, in a log line,
/// an error's description or a terminal. An application that prints what a message says (its
/// body, routing key, headers) escapes it with ``escaped(_:limit:)``, as the client's own logs do.
public enum LogText {
    package static let limit = 256

    /// `value` as text from the broker or a message, fit for a log line (``bounded(_:)``). An
    /// ``AMQPError`` describes itself escaped already: its fields are escaped once, not twice.
    package static func untrusted(_ value: Any) -> String {
        if let error = value as? AMQPError { return bounded(error.unescapedDescription) }
        return bounded("\(value)")
    }

    /// `text` escaped, and cut after ``limit`` characters: fit for a log line.
    package static func bounded(_ text: String) -> String {
        escaped(text, limit: limit)
    }

    /// `text` with what could act on a terminal or log viewer escaped: control characters (ESC
    /// included), CR and LF, C1 controls, line and paragraph separators, and the bidi controls
    /// that reorder what is shown (U+202E). Backslashes are doubled, so that an escape cannot be
    /// forged. Cut after `limit` Unicode scalars (then ends in `…`); `nil` keeps the whole text.
    public static func escaped(_ text: String, limit: Int?) -> String {
        var result = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                result += "…"
                break
            }
            count += 1
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "\\": result += "\\\\"
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028
                    || scalar.value == 0x2029 || scalar.properties.isBidiControl
                {
                    result += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result
    }
}

/// Keeps a misbehaving broker from flooding the log with one line: each kind of line is
/// written at most once per ``interval``, with how many were left out since.
struct LogRateLimiter {
    static let interval = Duration.seconds(10)
    private var lastWritten: [String: (at: ContinuousClock.Instant, suppressed: Int)] = [:]

    /// Whether to write a line of this kind now; when it is, how many were left out before it.
    mutating func admit(_ kind: String, now: ContinuousClock.Instant = .now) -> Int? {
        if let last = lastWritten[kind], now - last.at < Self.interval {
            lastWritten[kind]?.suppressed += 1
            return nil
        }
        let suppressed = lastWritten[kind]?.suppressed ?? 0
        lastWritten[kind] = (now, 0)
        return suppressed
    }
}
