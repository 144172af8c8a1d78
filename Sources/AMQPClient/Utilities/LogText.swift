import Logging

extension Logger.MetadataValue {
    /// Text that came from the broker (reply texts, names, errors that quote them), fit for a
    /// log line: control characters escaped and at most ``LogText/limit`` characters, so that a
    /// misbehaving broker can neither forge log lines nor make them huge.
    static func untrusted(_ value: Any) -> Self {
        .string(LogText.bounded("\(value)"))
    }
}

enum LogText {
    static let limit = 256

    static func bounded(_ text: String) -> String {
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
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.properties.isBidiControl {
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
