import Testing

@testable import AMQPClient

@Suite("Logs: text from the broker")
struct LogTextTests {
    @Test("control characters are escaped and long text is cut, so a broker can neither forge lines nor flood them")
    func bounded() {
        #expect(LogText.bounded("fine") == "fine")
        #expect(LogText.bounded("two\nlines\u{1B}[31m") == "two\\nlines\\u{1b}[31m")
        #expect(LogText.bounded(String(repeating: "x", count: 1000)).count == LogText.limit + 1)
    }

    @Test("escaping: C1 controls, line separators and bidi overrides too; a backslash cannot forge an escape; any limit")
    func escaped() {
        #expect(LogText.escaped("a\u{85}b\u{2028}c\u{202E}d\u{2067}e", limit: nil) == #"a\u{85}b\u{2028}c\u{202e}d\u{2067}e"#)
        #expect(LogText.escaped(#"a\nb"#, limit: nil) == #"a\\nb"#)
        #expect(LogText.escaped("é ✓ 日本", limit: nil) == "é ✓ 日本")
        #expect(LogText.escaped(String(repeating: "x", count: 1000), limit: nil).count == 1000)
        #expect(LogText.escaped("abcdef", limit: 3) == "abc…")
    }

    @Test("a kind of line is written at most once per interval, then says how many were left out")
    func rateLimited() {
        var limiter = LogRateLimiter()
        let start = ContinuousClock.now
        #expect(limiter.admit("returned", now: start) == 0)
        #expect(limiter.admit("returned", now: start + .seconds(1)) == nil)
        #expect(limiter.admit("returned", now: start + .seconds(2)) == nil)
        #expect(limiter.admit("blocked", now: start + .seconds(2)) == 0)
        #expect(limiter.admit("returned", now: start + .seconds(11)) == 2)
    }
}
